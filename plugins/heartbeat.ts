import { randomUUID } from 'node:crypto';
import fp from 'fastify-plugin';
import { normalizeMessage } from '../src/bus/normalize.js';
import { HeartbeatMonitor } from '../src/heartbeat/heartbeat-monitor.js';
import type { HeartbeatStore } from '../src/heartbeat/heartbeat-store.js';
import { defaultEcosystemPath, loadInstanceLimits, type LoadedLimits } from '../src/heartbeat/instance-limits.js';
import { forgetProcessSamples } from '../src/heartbeat/process-metrics.js';
import { RedisHeartbeatStore } from '../src/heartbeat/redis-heartbeat-store.js';
import { describeServices, type ServiceSources, type ServiceView } from '../src/heartbeat/service-directory.js';
import { SocketOwnerProofs } from '../src/heartbeat/socket-owner.js';

export interface HeartbeatOrgan {
  monitor: HeartbeatMonitor;
  store: HeartbeatStore;
  /** The ecosystem file read for instance limits, and what it gave. */
  limits: LoadedLimits;
  /** Which pid holds a beat's connection: only a proven pid is signalled. */
  proofs: SocketOwnerProofs;
  /** `GET /services`: the heartbeat records with the connections and routes that name each service. */
  services(): Promise<ServiceView[]>;
}

declare module 'fastify' {
  interface FastifyInstance {
    heartbeat: HeartbeatOrgan;
  }
}

const MiB = 1024 * 1024;

/**
 * The heartbeat organ: records in MongoDB when MONGO_URL is set (the
 * original's store), else in the gateway's Redis; instance limits from the
 * PM2 ecosystem file; a check every CHECK_INTERVAL; `heartbeat.ping`,
 * `heartbeat.down`, `heartbeat.warn`, `service.up` and `service.down`
 * published on the bus with source `heartbeat`. On close this session's records are marked stopped.
 */
export default fp(async function heartbeatPlugin(app) {
  const { config } = app;
  const log = app.log.child({ organ: 'heartbeat' });

  let store: HeartbeatStore;
  if (config.mongoUrl) {
    // The driver costs about 25 MB of memory: loaded only by the gateways that use it.
    const { MongoHeartbeatStore } = await import('../src/heartbeat/mongo-heartbeat-store.js');
    const mongo = new MongoHeartbeatStore({ url: config.mongoUrl, dbName: config.mongoDbName, collection: config.mongoCollection });
    mongo.prepare().catch((err: Error) => log.warn({ err: err.message }, 'mongodb did not answer at start: heartbeats answer 503 until it does'));
    store = mongo;
  } else {
    store = new RedisHeartbeatStore(app.redis.client);
  }

  const limits = loadInstanceLimits(config.ecosystemConfig ?? defaultEcosystemPath());
  if (limits.problem) log.warn({ path: limits.path, problem: limits.problem }, 'ecosystem file not loaded: no instance limits');
  else log.info({ path: limits.path, limits: Object.fromEntries(limits.limits) }, 'instance limits loaded');

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
      app.bus.router.publish(normalizeMessage({ type, payload }, 'heartbeat'));
    },
    log,
  });
  monitor.start();

  // A bus connection names its service with `?name=`. Its pid, pulls and
  // held tasks, and the proxy routes naming a service, come with the
  // connection linking and the edge's `service` field (issue 16).
  const sources: ServiceSources = {
    connections: () => [...app.bus.router.connections.values()].flatMap((connection) => (connection.name === null ? [] : [{
      name: connection.name, clientId: connection.id, pid: null, subscriptions: [...connection.patterns], pulls: [], tasks: [],
    }])),
    routes: () => [],
  };
  const services = async () => describeServices(await monitor.list(), sources);

  app.decorate('heartbeat', { monitor, store, limits, proofs: new SocketOwnerProofs(), services });

  app.health.register('heartbeats', async () => {
    await store.ping();
    return { ok: true, detail: `${store.kind}, session ${monitor.sessionId}` };
  }, false);

  app.addHook('onClose', async () => {
    await monitor.close();
    await store.close();
    forgetProcessSamples();
  });
}, { name: 'brainstem-heartbeat', dependencies: ['brainstem-bus', 'brainstem-redis'] });
