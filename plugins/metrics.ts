import { randomUUID } from 'node:crypto';
import fp from 'fastify-plugin';
import { GatewayMetrics } from '../src/metrics/gateway-metrics.js';
import { CachedRead, SharedFiguresLease } from '../src/metrics/shared-figures.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: GatewayMetrics;
  }
}

export interface MetricsOptions {
  /** Prefixes of the proxy routes, the `route` label of `brainstem_proxy_requests_total`. */
  proxyPrefixes: readonly string[];
}

/** Queue counts are read from Redis at most this often, however often Prometheus scrapes. */
const QUEUE_READ_TTL_MS = 5000;
/** Long enough to outlast a few scrape intervals of the reporting gateway. */
const SHARED_LEASE_MS = 60_000;

function isUnder(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`);
}

/**
 * Observability: the gateway's figures for Prometheus (`GET /metrics`).
 * Registered after the bus and before the queue organ, which reports task
 * deliveries and settlements to `app.metrics`.
 */
export default fp<MetricsOptions>(async function metricsPlugin(app, options) {
  const log = app.log.child({ organ: 'metrics' });
  const lease = new SharedFiguresLease(app.redis.client, `${app.config.busClusterChannel}:metrics-reporter`, randomUUID(), SHARED_LEASE_MS);
  const queueFigures = new CachedRead(async () => (app.hasDecorator('queues') ? app.queues.listQueues() : []), QUEUE_READ_TTL_MS);

  const metrics = new GatewayMetrics({
    bus() {
      const { counters, connections } = app.bus.router;
      return { connections: connections.size, published: counters.published, delivered: counters.delivered, slowConsumersDropped: counters.slowConsumersDropped };
    },
    queues: () => queueFigures.get(),
    instances: async () => (app.hasDecorator('heartbeat') ? app.heartbeat.monitor.list() : []),
    async reportsSharedFigures() {
      try {
        return await lease.held();
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'metrics: redis unreachable, shared figures left out of this scrape');
        return false;
      }
    },
  });
  app.decorate('metrics', metrics);

  const prefixes = options.proxyPrefixes;
  if (prefixes.length > 0) {
    app.addHook('onResponse', async (request, reply) => {
      const path = request.url.split('?', 1)[0] as string;
      const route = prefixes.find((prefix) => isUnder(path, prefix));
      if (route !== undefined) metrics.proxied(route, reply.statusCode);
    });
  }
}, { name: 'brainstem-metrics', dependencies: ['brainstem-redis', 'brainstem-bus'] });
