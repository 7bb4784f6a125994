import Fastify, { type FastifyServerOptions } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import authPlugin from './plugins/auth.js';
import busPlugin from './plugins/bus.js';
import busClusterPlugin from './plugins/bus-cluster.js';
import busHistoryPlugin from './plugins/bus-history.js';
import edgePlugin from './plugins/edge.js';
import heartbeatPlugin from './plugins/heartbeat.js';
import metricsPlugin from './plugins/metrics.js';
import queuesPlugin from './plugins/queues.js';
import redisPlugin from './plugins/redis.js';
import taskStreamsPlugin from './plugins/task-streams.js';
import busRoutes from './routes/bus.js';
import dashboardRoutes from './routes/dashboard.js';
import heartbeatRoutes from './routes/heartbeat.js';
import metricsRoutes from './routes/metrics.js';
import healthRoutes from './routes/health.js';
import { errorHandler, routeNotFound } from './routes/errors.js';
import queueRoutes from './routes/queues.js';
import taskStreamRoutes from './routes/task-streams.js';
import { MAX_JSON_DEPTH, valueNestsDeeperThan } from './src/bus/json-depth.js';
import { BusError } from './src/bus/protocol.js';
import { defaultConfig, type Config } from './src/config.js';
import { assertSafeBinding } from './src/edge/bind-check.js';
import { loadEdgeConfig, type EdgeConfig } from './src/edge/edge-config.js';
import { HealthRegistry } from './src/health.js';
import { createRedactor } from './src/redaction.js';

declare module 'fastify' {
  interface FastifyInstance {
    health: HealthRegistry;
  }
}

export interface BuildOptions extends Partial<Config> {
  /** Fastify's logger option; defaults to pino at `logLevel`. */
  logger?: FastifyServerOptions['logger'];
  /** The edge config itself (tests); otherwise read from `configPath`. */
  edge?: EdgeConfig;
}

/** Node's overdue-request checks: often enough that a timeout is enforced within a quarter of itself. */
function timeoutChecks(requestTimeoutMs: number): { connectionsCheckingInterval?: number; headersTimeout?: number } {
  if (requestTimeoutMs === 0) return {};
  return {
    connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.floor(requestTimeoutMs / 4))),
    headersTimeout: Math.min(60_000, requestTimeoutMs),
  };
}

/** A body Fastify's JSON parser made (the proxy passes a stream through instead). */
function isParsedJson(body: unknown): boolean {
  if (Array.isArray(body)) return true;
  if (typeof body !== 'object' || body === null) return false;
  const proto = Object.getPrototypeOf(body);
  return proto === Object.prototype || proto === null;
}

/**
 * The gateway as a Fastify app that does not listen: the server entry and
 * the tests both build it. `app.close()` releases everything it started.
 */
export async function buildApp(options: BuildOptions = {}) {
  const { logger, edge: givenEdge, ...overrides } = options;
  const config: Config = { ...defaultConfig(), ...overrides };
  // Checked before anything starts: a bad file or an unsafe bind stops here.
  const edge = givenEdge ?? loadEdgeConfig(config.configPath);
  assertSafeBinding({ host: config.host, insecure: config.insecure, tokenCount: edge.tokens.length });
  // Every log line passes one redaction rule: tokens in URLs (a browser
  // passes its token as ?token=) and the credentials of REDIS_URL/MONGO_URL.
  const redact = createRedactor([config.redisUrl, config.mongoUrl]);
  const logging = {
    level: config.logLevel,
    serializers: { req: (req: { method: string; url: string; host: string; ip: string }) => ({ method: req.method, url: req.url, host: req.host, remoteAddress: req.ip }) },
    hooks: { streamWrite: redact },
  };
  const app = Fastify({
    logger: logger === undefined ? logging : typeof logger === 'object' && logger !== null ? { ...logging, ...logger } : logger,
    bodyLimit: config.busMaxFrameBytes,
    // A request trickled in byte by byte would hold its socket forever. Node
    // looks for overdue requests every connectionsCheckingInterval.
    requestTimeout: config.httpRequestTimeoutMs,
    http: timeoutChecks(config.httpRequestTimeoutMs),
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.decorate('config', config);
  app.decorate('health', new HealthRegistry(redact));

  // Every error leaves as `{error, code}`, the same shape as on the bus.
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(routeNotFound);
  // Every JSON body passes the bus's depth rule: a task nested thousands
  // deep would otherwise be stored and then fail each recursive walk that
  // reads it. A hook, not a parser: the proxy installs its own JSON parser,
  // which Fastify refuses once the root's is not its default.
  app.addHook('preValidation', async (request) => {
    // Nesting past the limit takes an opening and a closing bracket per level: a shorter body cannot.
    if (Number(request.headers['content-length']) < 2 * (MAX_JSON_DEPTH + 1)) return;
    if (isParsedJson(request.body) && valueNestsDeeperThan(request.body)) {
      throw new BusError('INVALID_FRAME', `body nests deeper than ${MAX_JSON_DEPTH} levels`);
    }
  });

  await app.register(authPlugin, { tokens: edge.tokens, corsOrigins: edge.corsOrigins, hosts: edge.hosts });
  if (config.insecure && edge.tokens.length === 0) app.log.warn({ host: config.host }, 'BRAINSTEM_INSECURE: no tokens, anyone who can reach the gateway has full access');
  await app.register(redisPlugin);
  // The edge before the bus: proxied WebSocket upgrades must be wired before @fastify/websocket (stack-facts).
  await app.register(edgePlugin, { edge });
  await app.register(busPlugin);
  await app.register(busHistoryPlugin, { fileRules: edge.history });
  await app.register(busClusterPlugin);
  await app.register(busRoutes);
  await app.register(metricsPlugin, { proxyPrefixes: edge.proxy.map((route) => route.prefix) });
  await app.register(taskStreamsPlugin);
  await app.register(queuesPlugin);
  await app.register(queueRoutes);
  await app.register(taskStreamRoutes);
  await app.register(heartbeatPlugin, { routes: edge.proxy.flatMap(({ service, prefix }) => (service === undefined ? [] : [{ service, prefix }])) });
  await app.register(heartbeatRoutes);
  await app.register(dashboardRoutes);
  await app.register(healthRoutes);
  await app.register(metricsRoutes);
  return app;
}

export type BrainstemApp = Awaited<ReturnType<typeof buildApp>>;
