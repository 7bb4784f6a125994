import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { DEFAULT_HTTP_LAST } from '../src/bus/history/event-history.js';
import { normalizeMessage } from '../src/bus/normalize.js';
import { publishRefusal } from '../src/bus/principal.js';
import { BusError } from '../src/bus/protocol.js';
import { topicProblem } from '../src/bus/topic.js';
import { MAX_SERVICE_NAME_BYTES, nameProblem, quoted } from '../src/protocol/names.js';
import { ErrorBody } from './errors.js';

const Message = Type.Object({
  type: Type.String(),
  payload: Type.Optional(Type.Unknown()),
  source: Type.Optional(Type.String()),
  timestamp: Type.Optional(Type.String()),
  correlationId: Type.Optional(Type.Union([Type.String(), Type.Number()])),
  replyTo: Type.Optional(Type.String()),
  msgId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
});

const RetainedEvent = Type.Object({ type: Type.String(), offset: Type.String() }, { additionalProperties: true });

/** `GET /bus` (state, and the WebSocket itself), `POST /bus/publish` and `GET /bus/history`. */
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
    // The name keys the connection's service: refused here, before the upgrade, rather than cut.
    preValidation: async (request) => {
      const { name } = request.query;
      const problem = name === undefined || name === '' ? null : nameProblem(name, MAX_SERVICE_NAME_BYTES);
      if (problem !== null) throw new BusError('INVALID_FRAME', `name ${problem}: ${quoted(name as string)}`);
    },
    // `retained`: the retention rules, so that a page knows what it can replay.
    handler: async (request) => ({
      ...app.bus.router.describe({ offset: request.query.offset ?? 0, limit: request.query.limit ?? 200 }),
      retained: app.history.rules.list,
    }),
    wsHandler: (socket, request) => {
      const connection = app.bus.handleSocket(socket, request);
      if (request.query.pid !== undefined) app.heartbeat.claimPid(connection, request.query.pid, request.raw.socket);
    },
  });

  app.post('/bus/publish', {
    schema: {
      body: Message,
      response: {
        202: Type.Object({
          ok: Type.Literal(true),
          delivered: Type.Integer(),
          offset: Type.Optional(Type.String()),
          duplicate: Type.Optional(Type.Literal(true)),
        }),
        400: ErrorBody,
        403: ErrorBody,
        503: ErrorBody,
      },
    },
  }, async (request, reply) => {
    const event = normalizeMessage(request.body, request.principal.name ?? 'http', request.principal.name);
    if (!request.principal.may('publish', event.type)) {
      throw new BusError('FORBIDDEN', publishRefusal(event.type));
    }
    const published = await app.bus.publisher.publishWithReceipt(event);
    request.log.debug({ type: event.type, delivered: published.delivered }, 'http publish');
    return reply.code(202).send({ ok: true as const, ...published });
  });

  app.get('/bus/history', {
    schema: {
      querystring: Type.Object({
        topic: Type.String(),
        since: Type.Optional(Type.String()),
        last: Type.Optional(Type.Integer()),
        token: Type.Optional(Type.String()),
      }),
      response: {
        200: Type.Object({ events: Type.Array(RetainedEvent), offset: Type.String(), gap: Type.Boolean() }),
        400: ErrorBody,
        403: ErrorBody,
        503: ErrorBody,
      },
    },
  }, async (request) => {
    const { topic, since, last } = request.query;
    const problem = topicProblem(topic, true);
    if (problem !== null) throw new BusError('INVALID_TOPIC', `invalid topic: topic ${problem}: ${quoted(topic)}`);
    if (!request.principal.may('subscribe', topic)) throw new BusError('FORBIDDEN', `not allowed to subscribe to ${topic}`);
    const { rule, start } = app.history.startOf(topic, since, since === undefined && last === undefined ? DEFAULT_HTTP_LAST : last);
    const read = await app.history.read(rule, topic, start);
    const events = read.events.map(({ json, offset }) => ({ ...(JSON.parse(json) as { type: string }), offset }));
    return { events, offset: read.offset, gap: read.gap };
  });
};

export default busRoutes;
