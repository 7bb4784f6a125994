import type { Socket } from 'node:net';
import { TypeBoxValidatorCompiler, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { WebSocket } from 'ws';
import { BusError } from '../src/bus/protocol.js';
import { answerBeats, type BeatInput } from '../src/heartbeat/beat-socket.js';
import { clusterServices, type PeerGateway } from '../src/heartbeat/cluster-services.js';
import type { BeatOrigin } from '../src/heartbeat/heartbeat-monitor.js';
import type { ServiceView } from '../src/heartbeat/service-directory.js';
import { ErrorBody } from './errors.js';

/** `{pid, name}`: pid as a number or digits, as the original's parseInt took it. */
const Beat = Type.Object({
  pid: Type.Union([Type.Integer({ minimum: 1 }), Type.String({ pattern: '^\\s*[0-9]+\\s*$' })]),
  name: Type.String({ minLength: 1, maxLength: 200 }),
});

const BeatReply = Type.Object({
  status: Type.Literal('ok'),
  pid: Type.Integer(),
  name: Type.String(),
  cpu: Type.Number(),
  memory: Type.Number(),
  netRx: Type.Number(),
  netTx: Type.Number(),
});

const HeartbeatState = Type.Union([Type.Literal('alive'), Type.Literal('stale'), Type.Literal('stopped')]);

const RecordWithStatus = Type.Object({
  pid: Type.Integer(),
  last: Type.Number(),
  name: Type.String(),
  sessionId: Type.String(),
  cpu: Type.Number(),
  memory: Type.Number(),
  netRx: Type.Number(),
  netTx: Type.Number(),
  killedAt: Type.Optional(Type.Number()),
  startTime: Type.Union([Type.String(), Type.Null()]),
  local: Type.Boolean(),
  proven: Type.Boolean(),
  firstBeat: Type.Number(),
  downAt: Type.Optional(Type.Number()),
  status: HeartbeatState,
});

/** How long `GET /services` waits for each other gateway of the cluster. */
const PEER_TIMEOUT_MS = 1000;

const Service = Type.Object({
  name: Type.String(),
  status: Type.Union([HeartbeatState, Type.Literal('unknown')]),
  instances: Type.Array(Type.Object({
    pid: Type.Integer(), status: HeartbeatState, cpu: Type.Number(), memory: Type.Number(), lastBeat: Type.Number(),
  })),
  connections: Type.Array(Type.Object({
    clientId: Type.String(),
    pid: Type.Union([Type.Integer(), Type.Null()]),
    linked: Type.Boolean(),
    subscriptions: Type.Array(Type.String()),
    pulls: Type.Array(Type.Object({ queue: Type.String(), credits: Type.Integer() })),
    tasks: Type.Array(Type.Object({ queue: Type.String(), taskId: Type.String() })),
  })),
  routes: Type.Array(Type.String()),
});

/**
 * The user's heartbeat service as routes: `POST /heartbeat` and
 * `POST /heartbeat/heartbeat` (where the user's HeartbeatClient posts),
 * WebSocket `/heartbeat`, `GET /heartbeats`; and `GET /services`, the
 * same records grouped per service with the connections that name it. Bodies and error strings are
 * the original's, with the gateway's `code` beside each error.
 */
const heartbeatRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { monitor, proofs } = app.heartbeat;
  /** Where a beat on this connection came from; the proof is cached per socket. */
  const originOf = (socket: Socket): BeatOrigin => ({
    remoteAddress: socket.remoteAddress,
    provePid: (pid) => proofs.prove(socket, pid),
  });

  const beatRoute = {
    // The original answered every malformed beat with one message: keep it,
    // and check types without coercion (`true` must not become pid 1).
    attachValidation: true,
    validatorCompiler: TypeBoxValidatorCompiler,
    schema: {
      body: Beat,
      response: { 200: BeatReply, 400: ErrorBody, 401: ErrorBody, 409: ErrorBody, 500: ErrorBody, 503: ErrorBody },
    },
  };
  async function acceptBeat(request: FastifyRequest<{ Body: BeatInput }>) {
    if (request.validationError) throw new BusError('INVALID_FRAME', 'pid and name required');
    return monitor.beat(request.body, originOf(request.socket));
  }
  app.post('/heartbeat', beatRoute, acceptBeat);
  app.post('/heartbeat/heartbeat', beatRoute, acceptBeat);

  app.route({
    method: 'GET',
    url: '/heartbeat',
    schema: { response: { 426: ErrorBody } },
    handler: async () => {
      throw new BusError('UPGRADE_REQUIRED', 'open a WebSocket here, or POST {pid, name}');
    },
    wsHandler: (socket: WebSocket, request) => {
      const origin = originOf(request.socket);
      answerBeats(socket, (input) => monitor.beat(input, origin), request.log);
    },
  });

  app.get('/services', {
    // Like /heartbeats: with tokens configured, any known token.
    config: { access: 'token' },
    schema: {
      querystring: Type.Object({ scope: Type.Optional(Type.Union([Type.Literal('cluster'), Type.Literal('local')])), token: Type.Optional(Type.String()) }),
      response: {
        200: Type.Object({
          services: Type.Array(Service),
          // With other gateways on the bus: how many there are and how many answered in time.
          cluster: Type.Optional(Type.Object({ gateways: Type.Integer(), answered: Type.Integer() })),
        }),
        401: ErrorBody, 500: ErrorBody, 503: ErrorBody,
      },
    },
  }, async (request) => {
    const services = await app.heartbeat.services();
    const cluster = app.bus.router.describe({ offset: 0, limit: 1 }).cluster as { instances: (PeerGateway & { self?: boolean })[] } | undefined;
    const peers = cluster?.instances.filter((instance) => !instance.self) ?? [];
    if (request.query.scope === 'local' || peers.length === 0) return { services };
    // The caller's token opens the other gateways too (they share the edge config).
    const headers: Record<string, string> = { accept: 'application/json' };
    if (request.headers.authorization) headers.authorization = request.headers.authorization;
    else if (request.query.token) headers.authorization = `Bearer ${request.query.token}`;
    const merged = await clusterServices(services, peers, async (url) => {
      const res = await fetch(url, { headers, signal: AbortSignal.timeout(PEER_TIMEOUT_MS) });
      if (!res.ok) throw new Error(`${url}: ${res.status}`);
      return ((await res.json()) as { services: ServiceView[] }).services;
    });
    return { services: merged.services, cluster: { gateways: peers.length + 1, answered: merged.answered + 1 } };
  });

  app.get('/heartbeats', {
    schema: { response: { 200: Type.Array(RecordWithStatus), 401: ErrorBody, 500: ErrorBody, 503: ErrorBody } },
  }, async () => monitor.list());
};

export default heartbeatRoutes;
