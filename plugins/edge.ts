import { existsSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { join, resolve } from 'node:path';
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import type httpProxy from '@fastify/http-proxy';
import rateLimit from '@fastify/rate-limit';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Principal } from '../src/bus/principal.js';
import { BusError } from '../src/bus/protocol.js';
import { isLoopbackHost } from '../src/edge/bind-check.js';
import { ConnectionQuota } from '../src/edge/connection-quota.js';
import type { EdgeConfig, ProxyRoute } from '../src/edge/edge-config.js';
import { headersWithoutToken, queryWithoutToken } from '../src/edge/gateway-credentials.js';
import { packageRoot } from '../src/edge/package-root.js';
import { presentedToken, type TokenCarrier } from './auth.js';

export interface EdgeOptions {
  edge: EdgeConfig;
}

/** How long an upstream may take to accept a connection before it counts as down. */
const UPSTREAM_CONNECT_TIMEOUT_MS = 5000;

/** The token the gateway accepted for this request, if any (it never goes upstream). */
function gatewayToken(request: TokenCarrier & { principal: Principal }): string | null {
  return request.principal.name === null ? null : presentedToken(request);
}

function upstreamFailed(reply: FastifyReply, error: Error, route: ProxyRoute): void {
  const timedOut = (error as { statusCode?: number }).statusCode === 504;
  reply.request.log.warn({ err: error, prefix: route.prefix, upstream: route.upstream }, 'upstream failed');
  // The proxy answers through this callback: an error sent here goes to the app's error handler.
  void reply.send(timedOut
    ? new BusError('GATEWAY_TIMEOUT', `the service behind ${route.prefix} did not answer in time`)
    : new BusError('BAD_GATEWAY', `the service behind ${route.prefix} is unavailable`));
}

/**
 * A route that names its service answers 503 SERVICE_DOWN, without asking
 * the upstream, while no instance of that service is alive (heartbeats,
 * read synchronously); the next beat opens it again.
 */
function serviceGate(app: FastifyInstance, service: string) {
  const retryAfter = String(Math.max(1, Math.ceil(app.config.heartbeatCheckIntervalMs / 1000)));
  // Callback style: the proxy's preHandler type has no async form.
  return function gate(request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void {
    if (app.heartbeat.isAlive(service)) return done();
    request.log.info({ service }, 'refused: service down');
    reply.header('retry-after', retryAfter);
    done(new BusError('SERVICE_DOWN', `no instance of ${service} is alive (it sends no heartbeat); retry later`));
  };
}

async function registerProxy(app: FastifyInstance, route: ProxyRoute): Promise<void> {
  const queryString = (_search: string | undefined, reqUrl: string, request: TokenCarrier & { principal: Principal }) =>
    queryWithoutToken(reqUrl, gatewayToken(request));
  const options: Parameters<typeof httpProxy>[1] = {
    prefix: route.prefix,
    upstream: route.upstream,
    rewritePrefix: route.rewritePrefix,
    ...(route.websocket ? { websocket: true as const } : {}),
    ...(route.service === undefined ? {} : { preHandler: serviceGate(app, route.service) }),
    // Read by the auth hook, which runs before the upstream sees anything.
    config: { access: route.auth ? 'token' : 'open' },
    undici: { connect: { timeout: UPSTREAM_CONNECT_TIMEOUT_MS } },
    replyOptions: {
      queryString,
      rewriteRequestHeaders: (request, headers) => headersWithoutToken(headers, gatewayToken(request)),
      onError: (reply, { error }) => upstreamFailed(reply as FastifyReply, error, route),
    },
    wsClientOptions: { queryString, handshakeTimeout: UPSTREAM_CONNECT_TIMEOUT_MS },
  };
  // The proxy and its HTTP client cost about 10 MB: loaded only when a route needs them.
  const { default: proxy } = await import('@fastify/http-proxy');
  await app.register(proxy, options);
}

/**
 * One folder served under a prefix, with security headers. Each frontend
 * gets its own scope so that its helmet settings stay its own; proxied
 * pages keep the headers their service sets.
 */
async function registerPages(app: FastifyInstance, prefix: string, root: string, csp: boolean): Promise<void> {
  await app.register(async (pages) => {
    await pages.register(helmet, {
      global: true,
      // Plain http on a LAN is the normal case here: no forced upgrade, no HSTS.
      strictTransportSecurity: false,
      contentSecurityPolicy: csp ? { useDefaults: true, directives: { 'upgrade-insecure-requests': null } } : false,
    });
    // Dotfiles (.env, .git) are never pages: 404, as if absent.
    await pages.register(fastifyStatic, { root, prefix, redirect: prefix !== '/', decorateReply: false, dotfiles: 'ignore' });
  });
}

function isUnderPrefix(rawUrl: string | undefined, prefixes: readonly string[]): boolean {
  const pathname = (rawUrl ?? '').split('?', 1)[0] as string;
  return prefixes.some((prefix) => pathname === prefix || pathname.startsWith(`${prefix}/`));
}

/**
 * Every 'upgrade' listener sees every upgrade. The proxy's listener takes
 * the ones under its prefixes; @fastify/websocket's (the bus) would take
 * them too, fail on the socket the proxy already owns, and log a warning
 * with a stack for every proxied WebSocket. Listeners added after the
 * proxies are therefore shown only the upgrades outside those prefixes,
 * with the same path test the proxy uses.
 */
function keepProxiedUpgradesToTheProxy(app: FastifyInstance, prefixes: readonly string[]): void {
  if (prefixes.length === 0) return;
  const proxyListeners = new Set(app.server.listeners('upgrade'));
  const guards: ((...args: unknown[]) => void)[] = [];
  app.addHook('onReady', async () => {
    for (const listener of app.server.listeners('upgrade') as ((...args: unknown[]) => void)[]) {
      if (proxyListeners.has(listener)) continue;
      const guard = (request: unknown, ...rest: unknown[]) => {
        if (!isUnderPrefix((request as IncomingMessage).url, prefixes)) listener.call(app.server, request, ...rest);
      };
      app.server.removeListener('upgrade', listener);
      app.server.on('upgrade', guard);
      guards.push(guard);
    }
  });
  app.addHook('onClose', async () => {
    for (const guard of guards) app.server.removeListener('upgrade', guard);
  });
}

/**
 * Caps the WebSockets one client address and one token hold open: checked
 * at the upgrade (after auth, which names the token), released when the
 * socket closes, whatever route took it.
 */
function limitConnectionsPerClient(app: FastifyInstance, maxPerClient: number): void {
  if (maxPerClient === 0) return;
  const quota = new ConnectionQuota(maxPerClient);
  app.addHook('onRequest', async (request, reply) => {
    if (request.headers.upgrade === undefined) return;
    const keys = [`address:${request.ip}`];
    if (request.principal.name !== null) keys.push(`token:${request.principal.name}`);
    const taken = quota.take(keys);
    if ('full' in taken) {
      request.log.info({ over: taken.full }, 'refused: too many connections');
      const by = taken.full.startsWith('token:') ? 'this token' : 'this address';
      // Sent at once, as the auth hook's refusals are (see plugins/auth.ts).
      return reply.send(new BusError('RATE_LIMITED', `too many connections from ${by}: at most ${maxPerClient} open at once`));
    }
    request.raw.socket.once('close', taken.release);
  });
}

/**
 * The skin: rate limits, CORS, proxied internal services and frontends.
 * Registered before the bus so that the proxies' WebSocket upgrade handling
 * is in place before @fastify/websocket's (see stack-facts).
 */
export default fp<EdgeOptions>(async function edgePlugin(app, { edge }) {
  const { config } = app;
  limitConnectionsPerClient(app, config.busMaxConnectionsPerClient);

  if (config.httpRateLimitPerMinute > 0) {
    await app.register(rateLimit, {
      global: true,
      max: config.httpRateLimitPerMinute,
      timeWindow: 60_000,
      ...(config.httpRateLimitLoopback ? {} : { allowList: (request: FastifyRequest) => isLoopbackHost(request.ip) }),
      errorResponseBuilder: (_request, context) =>
        new BusError('RATE_LIMITED', `rate limit exceeded: ${context.max} requests per minute; retry in ${context.after}`),
    });
  }

  if (edge.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: edge.corsOrigins,
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: ['Authorization', 'Content-Type'],
      maxAge: 600,
    });
  }

  for (const route of edge.proxy) {
    await registerProxy(app, route);
    app.log.info({ prefix: route.prefix, upstream: route.upstream, websocket: route.websocket, auth: route.auth, service: route.service }, 'proxy route');
  }
  keepProxiedUpgradesToTheProxy(app, edge.proxy.filter((route) => route.websocket).map((route) => route.prefix));

  for (const frontend of edge.static) {
    await registerPages(app, frontend.prefix, frontend.root, frontend.csp);
    app.log.info({ prefix: frontend.prefix, root: frontend.root }, 'frontend');
  }

  const dashboard = config.dashboardDir !== null ? resolve(config.dashboardDir) : join(packageRoot(), 'public');
  if (existsSync(dashboard)) await registerPages(app, '/', dashboard, true);
  else app.log.warn({ dashboard }, 'no dashboard folder: nothing is served at /');
}, { name: 'brainstem-edge', dependencies: ['brainstem-auth'] });
