import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import websocket from '@fastify/websocket';
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { WebSocket } from 'ws';
import type { BusConnection } from '../src/bus/bus-connection.js';
import { BusPublisher } from '../src/bus/bus-publisher.js';
import { BusRouter } from '../src/bus/bus-router.js';
import { FrameDispatcher } from '../src/bus/frame-dispatcher.js';
import { FrameRateLimiter } from '../src/bus/frame-rate-limiter.js';
import { PROTOCOL_VERSION } from '../src/bus/protocol.js';
import { registerPubSubActions } from '../src/bus/pubsub-actions.js';
import type { Config } from '../src/config.js';
import { CloseCode } from '../src/protocol/close-codes.js';
import type { ErrorReply } from '../src/protocol/error-codes.js';
import { releaseUpgrade, tcpSocketOf } from '../src/streams/ws-adapter.js';

export interface Bus {
  router: BusRouter;
  /** Where every publish starts (history, then the router). */
  publisher: BusPublisher;
  dispatcher: FrameDispatcher;
  /** Binds one accepted WebSocket to the bus (the `/bus` route's wsHandler). */
  handleSocket(socket: WebSocket, request: FastifyRequest): BusConnection;
}

declare module 'fastify' {
  interface FastifyInstance {
    bus: Bus;
    config: Config;
  }
}

const CLOSE_GRACE_MS = 1000;

/** One function for every upgraded socket (not a closure each: it stays for the connection's life). */
function endOwnSide(this: Socket): void {
  this.end();
}

const CONNECTION = Symbol('bus connection');
type BusWebSocket = WebSocket & { [CONNECTION]: BusConnection };

function connectionOf(socket: WebSocket): BusConnection {
  return (socket as BusWebSocket)[CONNECTION];
}

/**
 * The nerves: the pub/sub core bound to WebSockets. Shares `app.bus` so the
 * queue organ can register its actions and follow disconnections.
 */
export default fp(async function busPlugin(app) {
  const { config } = app;
  const router = new BusRouter({
    maxBacklogBytes: config.busMaxBacklogBytes,
    maxPatternsPerConnection: config.busMaxSubscriptions,
    maxPatternBytesPerConnection: config.busMaxPatternBytes,
    log: app.log,
  });
  const limiter = config.busMaxFramesPerSecond > 0 ? new FrameRateLimiter(config.busMaxFramesPerSecond) : null;
  const dispatcher = new FrameDispatcher(app.log, limiter);
  const publisher = new BusPublisher(router);
  registerPubSubActions(dispatcher, router, publisher, app.log);

  // One set of listeners for every socket, each finding its connection on
  // the socket: a set of closures per connection was about 1 kB of the
  // heap an idle connection costs (heap snapshots, S3).
  function onMessage(this: WebSocket, data: Buffer, isBinary: boolean): void {
    const connection = connectionOf(this);
    if (isBinary) dispatcher.handleBinary(connection, data);
    else dispatcher.handle(connection, data);
  }
  function onPong(this: WebSocket): void {
    connectionOf(this).missedPongs = 0;
  }
  function onError(this: WebSocket, err: Error): void {
    app.log.debug({ err, clientId: connectionOf(this).id }, 'bus socket error');
  }
  function onClose(this: WebSocket, code: number): void {
    const connection = connectionOf(this);
    router.detach(connection);
    app.log.info({ clientId: connection.id, name: connection.name, code }, 'bus client disconnected');
  }

  function handleSocket(socket: WebSocket, request: FastifyRequest): BusConnection {
    const query = request.query as { name?: unknown };
    // Checked by the route (routes/bus.ts) before the upgrade.
    const name = typeof query.name === 'string' && query.name !== '' ? query.name : null;
    const connection = router.attach(socket, {
      id: randomUUID(),
      name,
      remoteAddress: request.socket.remoteAddress ?? 'unknown',
      principal: request.principal,
      stream: tcpSocketOf(socket),
    });
    releaseUpgrade(socket);
    const bound = Object.assign(socket, { [CONNECTION]: connection });
    // Listeners first, before anything can arrive (see stack-facts).
    bound.on('message', onMessage);
    bound.on('pong', onPong);
    bound.on('error', onError);
    bound.on('close', onClose);
    app.log.info({ clientId: connection.id, name, remoteAddress: connection.remoteAddress }, 'bus client connected');
    connection.send({ welcome: { clientId: connection.id, name, protocol: PROTOCOL_VERSION } });
    return connection;
  }

  app.decorate('bus', { router, publisher, dispatcher, handleSocket });

  // An upgrade refused while the gateway closes is answered 503 on a socket
  // that nothing ends once its peer hangs up; the HTTP server, and so
  // app.close(), would wait for it forever. End our side when theirs ends.
  app.server.on('upgrade', (_request, socket: Socket) => {
    socket.on('end', endOwnSide);
  });

  await app.register(websocket, {
    options: { maxPayload: config.busMaxFrameBytes },
    // Tell clients the gateway is going away (1001) so they reconnect; a
    // client that does not finish the close handshake soon is cut off, so
    // that app.close() never waits on a peer.
    preClose(done) {
      const server = this.websocketServer;
      const clients = [...server.clients];
      for (const client of clients) client.close(CloseCode.GOING_AWAY, 'gateway shutting down');
      const closed = clients.map((client) => new Promise((resolve) => {
        if (client.readyState === client.CLOSED) resolve(null);
        else client.once('close', resolve);
      }));
      let grace: NodeJS.Timeout | undefined;
      const timeout = new Promise((resolve) => { grace = setTimeout(resolve, CLOSE_GRACE_MS); });
      void Promise.race([Promise.all(closed), timeout]).then(() => {
        clearTimeout(grace);
        for (const client of server.clients) client.terminate();
        server.close(() => done());
      });
    },
  });

  const pingTimer = setInterval(() => router.sweepDeadPeers(), config.busPingIntervalMs);
  const rateTimer = setInterval(() => router.sampleRates(), 1000);
  pingTimer.unref();
  rateTimer.unref();
  app.addHook('onClose', async () => {
    clearInterval(pingTimer);
    clearInterval(rateTimer);
  });
  app.health.register('bus', () => ({ ok: true, detail: `${router.connections.size} connections` }));
}, { name: 'brainstem-bus', dependencies: ['brainstem-auth'] });
