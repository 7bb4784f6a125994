import { randomUUID } from 'node:crypto';
import fp from 'fastify-plugin';
import { GatewayMetrics } from '../src/metrics/gateway-metrics.js';
import { CachedRead, SharedFiguresLease } from '../src/metrics/shared-figures.js';
import type { SpanExport } from '../src/trace/span-export.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: GatewayMetrics;
    /** Present only when OTEL_EXPORTER_OTLP_ENDPOINT is set. */
    spans?: SpanExport;
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
 * Observability: the gateway's figures for Prometheus (`GET /metrics`) and,
 * when an OTLP endpoint is set, its spans.
 * Registered after the bus and before the queue organ, which reports task
 * deliveries and settlements to `app.metrics`.
 */
export default fp<MetricsOptions>(async function metricsPlugin(app, options) {
  const log = app.log.child({ organ: 'metrics' });
  const lease = new SharedFiguresLease(app.redis.client, `${app.config.busClusterChannel}:metrics-reporter`, randomUUID(), SHARED_LEASE_MS);
  const queueFigures = new CachedRead(async () => (app.hasDecorator('queues') ? app.queues.listQueues() : []), QUEUE_READ_TTL_MS);
  const openStreams = new CachedRead(async () => (app.hasDecorator('taskStreams') ? app.taskStreams.openStreams() : 0), QUEUE_READ_TTL_MS);

  const metrics = new GatewayMetrics({
    bus() {
      const { counters, connections } = app.bus.router;
      return { connections: connections.size, published: counters.published, delivered: counters.delivered, slowConsumersDropped: counters.slowConsumersDropped };
    },
    queues: () => queueFigures.get(),
    liveQueues: () => (app.hasDecorator('queues') ? app.queues.liveQueueCount : 0),
    instances: async () => (app.hasDecorator('heartbeat') ? app.heartbeat.monitor.list() : []),
    // The task-streams organ registers after this one: looked up at scrape.
    streams: () => (app.hasDecorator('taskStreams')
      ? { followedStreams: app.taskStreams.followedStreams, followers: app.taskStreams.followers, heldReceipts: app.taskStreams.heldReceipts }
      : { followedStreams: 0, followers: 0, heldReceipts: 0 }),
    openStreams: () => openStreams.get(),
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

  if (app.config.otelEndpoint) {
    const { startSpanExport } = await import('../src/trace/span-export.js');
    const spans = await startSpanExport(app.config.otelEndpoint, 'brainstem');
    app.bus.publisher.observePublishes((event, delivered) => {
      if (event.traceparent === undefined) return;
      const now = Date.now();
      spans.record({ name: `publish ${event.type}`, traceparent: event.traceparent, startMs: now, endMs: now, attributes: { 'messaging.destination.name': event.type, 'brainstem.delivered': delivered } });
    });
    app.decorate('spans', spans);
    app.addHook('onClose', async () => {
      app.bus.publisher.observePublishes(null);
      await spans.close();
    });
    log.info({ endpoint: app.config.otelEndpoint }, 'spans exported over OTLP/HTTP');
  }

  const prefixes = options.proxyPrefixes;
  if (prefixes.length > 0) {
    app.addHook('onResponse', async (request, reply) => {
      const path = request.url.split('?', 1)[0] as string;
      const route = prefixes.find((prefix) => isUnder(path, prefix));
      if (route !== undefined) metrics.proxied(route, reply.statusCode);
    });
  }
}, { name: 'brainstem-metrics', dependencies: ['brainstem-redis', 'brainstem-bus'] });
