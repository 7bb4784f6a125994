import Fastify, { type FastifyError, type FastifyServerOptions } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import authPlugin from './plugins/auth.js';
import busPlugin from './plugins/bus.js';
import busClusterPlugin from './plugins/bus-cluster.js';
import edgePlugin from './plugins/edge.js';
import heartbeatPlugin from './plugins/heartbeat.js';
import queuesPlugin from './plugins/queues.js';
import redisPlugin from './plugins/redis.js';
import busRoutes from './routes/bus.js';
import dashboardRoutes from './routes/dashboard.js';
import heartbeatRoutes from './routes/heartbeat.js';
import healthRoutes from './routes/health.js';
import { errorReply } from './routes/errors.js';
import queueRoutes from './routes/queues.js';
import { defaultConfig, type Config } from './src/config.js';
import { assertSafeBinding } from './src/edge/bind-check.js';
import { loadEdgeConfig, type EdgeConfig } from './src/edge/edge-config.js';
import { BusError } from './src/bus/protocol.js';
import { redactTokenInUrl } from './src/edge/gateway-credentials.js';
import { HealthRegistry } from './src/health.js';

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

/** Codes Fastify gives its own client errors, mapped to the protocol's. */
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'INVALID_FRAME',
};

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
  const app = Fastify({
    logger: logger ?? {
      level: config.logLevel,
      // A browser passes its token as ?token=: keep it out of the logs.
      serializers: { req: (req) => ({ method: req.method, url: redactTokenInUrl(req.url), host: req.host, remoteAddress: req.ip }) },
    },
    bodyLimit: config.busMaxFrameBytes,
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.decorate('config', config);
  app.decorate('health', new HealthRegistry());

  // Every error leaves as `{error, code}`, the same shape as on the bus.
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err.validation) return reply.code(400).send({ error: err.message, code: 'INVALID_FRAME' });
    if (err instanceof BusError) return errorReply(reply, err);
    const status = err.statusCode ?? 500;
    if (status < 500) {
      return reply.code(status).send({ error: err.message, code: FASTIFY_CODES[err.code] ?? err.code ?? 'INVALID_FRAME' });
    }
    request.log.error({ err }, 'request failed');
    return reply.code(status).send({ error: 'internal error', code: 'INTERNAL' });
  });

  await app.register(authPlugin, { tokens: edge.tokens });
  if (config.insecure && edge.tokens.length === 0) app.log.warn({ host: config.host }, 'BRAINSTEM_INSECURE: no tokens, anyone who can reach the gateway has full access');
  await app.register(redisPlugin);
  // The edge before the bus: proxied WebSocket upgrades must be wired before @fastify/websocket (stack-facts).
  await app.register(edgePlugin, { edge });
  await app.register(busPlugin);
  await app.register(busClusterPlugin);
  await app.register(busRoutes);
  await app.register(queuesPlugin);
  await app.register(queueRoutes);
  await app.register(heartbeatPlugin);
  await app.register(heartbeatRoutes);
  await app.register(dashboardRoutes);
  await app.register(healthRoutes);
  return app;
}

export type BrainstemApp = Awaited<ReturnType<typeof buildApp>>;
