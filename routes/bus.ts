import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { MAX_JSON_DEPTH, valueNestsDeeperThan } from '../src/bus/json-depth.js';
import { normalizeMessage } from '../src/bus/normalize.js';
import { publishRefusal } from '../src/bus/principal.js';
import { BusError } from '../src/bus/protocol.js';
import { errorReply, ErrorBody } from './errors.js';

const Message = Type.Object({
  type: Type.String(),
  payload: Type.Optional(Type.Unknown()),
  source: Type.Optional(Type.String()),
  timestamp: Type.Optional(Type.String()),
  correlationId: Type.Optional(Type.Union([Type.String(), Type.Number()])),
  replyTo: Type.Optional(Type.String()),
});

/** `GET /bus` (state, and the WebSocket itself) and `POST /bus/publish`. */
const busRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.route({
    method: 'GET',
    url: '/bus',
    schema: {
      querystring: Type.Object({
        name: Type.Optional(Type.String()),
        token: Type.Optional(Type.String()),
        // The client's own process: linked to its heartbeat once proven (v2 §3).
        pid: Type.Optional(Type.Integer({ minimum: 1, maximum: 4_194_304 })),
        // A page of the connections, oldest first: the answer stays small whatever the number of clients.
        offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 200 })),
      }),
    },
    handler: async (request) => app.bus.router.describe({ offset: request.query.offset ?? 0, limit: request.query.limit ?? 200 }),
    wsHandler: (socket, request) => {
      const connection = app.bus.handleSocket(socket, request);
      if (request.query.pid !== undefined) app.heartbeat.claimPid(connection, request.query.pid, request.raw.socket);
    },
  });

  app.post('/bus/publish', {
    schema: {
      body: Message,
      response: { 202: Type.Object({ ok: Type.Literal(true), delivered: Type.Integer() }), 400: ErrorBody, 403: ErrorBody },
    },
  }, async (request, reply) => {
    try {
      if (valueNestsDeeperThan(request.body)) throw new BusError('INVALID_FRAME', `message nests deeper than ${MAX_JSON_DEPTH} levels`);
      const event = normalizeMessage(request.body, request.principal.name ?? 'http', request.principal.name);
      if (!request.principal.may('publish', event.type)) {
        throw new BusError('FORBIDDEN', publishRefusal(event.type));
      }
      const delivered = app.bus.router.publish(event);
      request.log.debug({ type: event.type, delivered }, 'http publish');
      return reply.code(202).send({ ok: true as const, delivered });
    } catch (err) {
      return errorReply(reply, err);
    }
  });
};

export default busRoutes;
