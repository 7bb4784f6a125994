import { randomUUID } from 'node:crypto';
import fp from 'fastify-plugin';
import { normalizeMessage } from '../src/bus/normalize.js';
import { HeartbeatMonitor } from '../src/heartbeat/heartbeat-monitor.js';
import type { HeartbeatStore } from '../src/heartbeat/heartbeat-store.js';
import { defaultEcosystemPath, loadInstanceLimits, type LoadedLimits } from '../src/heartbeat/instance-limits.js';
import { forgetProcessSamples, isLoopback } from '../src/heartbeat/process-metrics.js';
import { RedisHeartbeatStore } from '../src/heartbeat/redis-heartbeat-store.js';
import type { BusConnection } from '../src/bus/bus-connection.js';
import { CloseCode } from '../src/protocol/close-codes.js';
import { ProcessLinks } from '../src/heartbeat/process-links.js';
import { describeServices, type ServiceSources, type ServiceView } from '../src/heartbeat/service-directory.js';
import { SocketOwnerProofs, type ConnectionEnds } from '../src/heartbeat/socket-owner.js';

export interface HeartbeatOrgan {
  monitor: HeartbeatMonitor;
  store: HeartbeatStore;
  /** The ecosystem file read for instance limits, and what it gave. */
  limits: LoadedLimits;
  /** Which pid holds a beat's connection: only a proven pid is signalled. */
  proofs: SocketOwnerProofs;
  /** `GET /services`: the heartbeat records with the connections and routes that name each service. */
  services(): Promise<ServiceView[]>;
  /**
   * A bus connection opened with `?pid=`: labelled at once, linked to the
   * process's heartbeat when the proof resolves (the welcome does not wait).
   */
  claimPid(connection: BusConnection, pid: number, socket: ConnectionEnds & object): void;
  /** A route gate: an instance of `name` is alive (see HeartbeatMonitor.isAlive). */
  isAlive(name: string): boolean;
}

declare module 'fastify' {
  interface FastifyInstance {
    heartbeat: HeartbeatOrgan;
  }
}

const MiB = 1024 * 1024;
const LAPSED = 'heartbeat lapsed';

/** Registered by the edge: the proxy routes that name a service. */
export interface ServiceRoute {
  service: string;
  prefix: string;
}

/**
 * The heartbeat organ: records in MongoDB when MONGO_URL is set (the
 * original's store), else in the gateway's Redis; instance limits from the
 * PM2 ecosystem file; a check every CHECK_INTERVAL; `heartbeat.ping`,
 * `heartbeat.down`, `heartbeat.warn`, `service.up` and `service.down`
 * published on the bus with source `heartbeat`. On close this session's records are marked stopped.
 * Bus connections that prove their `?pid=` are linked to that process:
 * when its heartbeat lapses they lose their tasks and are closed (4001).
 */
export interface HeartbeatOptions {
  /** The edge config's proxy routes that name a service. */
  routes?: ServiceRoute[];
}

export default fp<HeartbeatOptions>(async function heartbeatPlugin(app, options) {
  const { config } = app;
  const log = app.log.child({ organ: 'heartbeat' });

  let store: HeartbeatStore;
  if (config.mongoUrl) {
    // The driver costs about 25 MB of memory: loaded only by the gateways that use it.
    const { MongoHeartbeatStore } = await import('../src/heartbeat/mongo-heartbeat-store.js');
    const mongo = new MongoHeartbeatStore({ url: config.mongoUrl, dbName: config.mongoDbName, collection: config.mongoCollection });
    mongo.prepare().then(
      (refused) => {
        if (refused !== null) log.warn({ err: refused }, 'mongodb refused the unique pid index: two first beats of one pid at once may store it twice');
      },
      (err: Error) => log.warn({ err: err.message }, 'mongodb did not answer at start: heartbeats answer 503 until it does'),
    );
    store = mongo;
  } else {
    store = new RedisHeartbeatStore(app.redis.client);
  }

  const limits = loadInstanceLimits(config.ecosystemConfig ?? defaultEcosystemPath());
  if (limits.problem) log.warn({ path: limits.path, problem: limits.problem }, 'ecosystem file not loaded: no instance limits');
  else log.info({ path: limits.path, limits: Object.fromEntries(limits.limits) }, 'instance limits loaded');

  const links = new ProcessLinks<BusConnection>();
  app.bus.router.onDetach((connection) => links.forget(connection.id));

  /**
   * Its process went quiet: the connection's tasks are revoked and go back
   * at once (an attempt counted), its pulls end, and it is closed with 4001
   * so its client reconnects and abandons the revoked tasks.
   */
  function lapse(connection: BusConnection): void {
    app.queues.revokeAll(connection.id, LAPSED);
    connection.close(CloseCode.HEARTBEAT_LAPSED, LAPSED);
    links.forget(connection.id);
  }

  const monitor = new HeartbeatMonitor({
    store,
    sessionId: randomUUID(),
    settings: {
      timeoutMs: config.heartbeatTimeoutMs,
      checkIntervalMs: config.heartbeatCheckIntervalMs,
      stopEnabled: config.heartbeatStop,
      stopGraceMs: config.heartbeatStopGraceMs,
      warnCpuPercent: config.heartbeatWarnCpu,
      warnMemoryBytes: config.heartbeatWarnMemoryMb * MiB,
    },
    limits: limits.limits,
    protectedPids: () => [app.redis.supervisor?.pid],
    publish: (type, payload) => {
      app.bus.publisher.publish(normalizeMessage({ type, payload }, 'heartbeat'));
    },
    onDown: (report) => {
      const connections = links.linked(report.pid);
      if (connections.length > 0) log.warn({ pid: report.pid, name: report.name, connections: connections.length }, 'heartbeat lapsed: its bus connections lose their tasks and are closed');
      for (const connection of connections) lapse(connection);
    },
    log,
  });
  monitor.start();

  // A bus connection names its service with `?name=` (or through the
  // heartbeat of the process it is linked to); proxy routes with `service`.
  const sources: ServiceSources = {
    // A closing connection (a lapsed one waits for its peer's close handshake) is gone already.
    connections: () => [...app.bus.router.connections.values()].filter((connection) => !connection.closing).map((connection) => {
      const given = links.pidOfConnection(connection.id);
      return {
        name: connection.name,
        clientId: connection.id,
        pid: given?.pid ?? null,
        linked: given?.linked ?? false,
        subscriptions: [...connection.patterns],
        ...app.queues.holdings(connection.id),
      };
    }),
    routes: () => options.routes ?? [],
  };
  const services = async () => describeServices(await monitor.list(), sources);

  const proofs = new SocketOwnerProofs();
  function claimPid(connection: BusConnection, pid: number, socket: ConnectionEnds & object): void {
    links.label(connection, pid);
    // Only over loopback TCP can /proc say who holds the other end.
    if (!isLoopback(socket.remoteAddress)) return;
    proofs.prove(socket, pid).then((proven) => {
      if (proven) links.link(connection);
      log.debug({ clientId: connection.id, pid, proven }, proven ? 'bus connection linked to its process' : 'bus connection pid not proven: a label only');
    }, (err: unknown) => log.warn({ err, clientId: connection.id, pid }, 'bus connection pid proof failed: a label only'));
  }

  app.decorate('heartbeat', {
    monitor, store, limits, proofs, services, claimPid, isAlive: (name: string) => monitor.isAlive(name),
  });

  // Says what happened to the store: an outage shows while it lasts and after it ended.
  app.health.register('heartbeats', async () => {
    const iso = (ms: number) => new Date(ms).toISOString();
    try {
      await monitor.probeStore();
    } catch (err) {
      const since = monitor.storeOutage?.since ?? Date.now();
      return { ok: false, detail: `${(err as Error).message} (since ${iso(since)})` };
    }
    const detail = `${store.kind}, session ${monitor.sessionId}`;
    const outage = monitor.storeOutage;
    if (outage === null || outage.until === null) return { ok: true, detail };
    return { ok: true, detail: `${detail}; back at ${iso(outage.until)} after an outage from ${iso(outage.since)}: ${outage.error}` };
  }, false);

  app.addHook('onClose', async () => {
    await monitor.close();
    await store.close();
    forgetProcessSamples();
  });
}, { name: 'brainstem-heartbeat', dependencies: ['brainstem-bus', 'brainstem-redis', 'brainstem-queues'] });
