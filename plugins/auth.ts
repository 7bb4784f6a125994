import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { OPEN_PRINCIPAL, type Principal } from '../src/bus/principal.js';
import { BusError } from '../src/bus/protocol.js';
import { describeRequirement, requirementFor, satisfies, type DeclaredAccess } from '../src/edge/access-policy.js';
import type { TokenSpec } from '../src/edge/edge-config.js';
import { judgeBrowser, type BrowserPolicy } from '../src/edge/request-origin.js';
import { ANONYMOUS_PRINCIPAL, TokenTable } from '../src/edge/token-table.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling: what its token allows (everything when auth is off). */
    principal: Principal;
  }
  interface FastifyContextConfig {
    /** Overrides the path rules of the access policy (proxied routes set it). */
    access?: DeclaredAccess;
  }
}

export interface AuthOptions {
  /** The configured tokens; none means auth is off and everyone is the open principal. */
  tokens?: readonly TokenSpec[];
  /** Origins besides the gateway's own allowed to call it (the config's `cors.origins`). */
  corsOrigins?: readonly string[];
  /** Host names besides loopback a request may name when no tokens are configured. */
  hosts?: readonly string[];
}

/** What a token can be read from: a Fastify request, or the proxy's view of one. */
export interface TokenCarrier {
  headers: { authorization?: string | string[] | undefined };
  query: unknown;
}

/**
 * Every token the request carries: `Authorization: Bearer X` first, then
 * each `?token=X` (a browser cannot set headers on a WebSocket).
 */
export function presentedTokens(request: TokenCarrier): string[] {
  const tokens: string[] = [];
  const header = request.headers.authorization;
  if (typeof header === 'string') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (match) tokens.push(match[1] as string);
  }
  const query = request.query as Record<string, unknown> | undefined;
  const inQuery = query?.token;
  for (const token of Array.isArray(inQuery) ? inQuery : [inQuery]) {
    if (typeof token === 'string' && token !== '') tokens.push(token);
  }
  return tokens;
}

/** The one token of a request (the auth hook refuses a request with more). */
export function presentedToken(request: TokenCarrier): string | null {
  return presentedTokens(request)[0] ?? null;
}

function isCorsPreflight(request: FastifyRequest): boolean {
  return request.method === 'OPTIONS' && request.headers.origin !== undefined
    && request.headers['access-control-request-method'] !== undefined;
}

/** The refusal of a request with no token, or an unknown one, where tokens are configured. */
export function tokenRefusal(presented: string | null): BusError {
  return new BusError('UNAUTHORIZED', presented === null ? 'a token is required (Authorization: Bearer or ?token=)' : 'unknown token');
}

/**
 * Gives every request a principal in `onRequest`, which runs before any
 * handler and before a WebSocket upgrade, and refuses what the caller may
 * not reach: 401 for a missing or unknown token, 403 for a known token
 * without the right. Per-frame rights on /bus are checked by the actions.
 * A refusal is sent to the error handler at once rather than thrown: a
 * rejected hook reaches it only after the parser has read the rest of the
 * packet, and bytes a sloppy client sent after its headers (a preflight
 * with a body and no length) would have the connection cut with a 400 first.
 */
export default fp<AuthOptions>(async function authPlugin(app, options) {
  const table = new TokenTable(options.tokens ?? []);
  const corsOrigins = options.corsOrigins ?? [];
  const browsers: BrowserPolicy = { corsOrigins, hosts: options.hosts ?? [], checkHost: table.size === 0 };
  app.decorateRequest('principal', null as unknown as Principal);

  // Before anything else, auth on or off: a page the user merely opened
  // must not drive the gateway (spec v2 §5).
  app.addHook('onRequest', async (request, reply) => {
    const verdict = judgeBrowser(browsers, request.headers.origin, request.headers.host);
    if (!verdict.ok) {
      request.log.info({ origin: request.headers.origin, host: request.headers.host }, 'refused: foreign origin or host');
      return reply.send(new BusError('FORBIDDEN', verdict.message));
    }
    // Without a CORS section nobody answers preflights: the gateway does,
    // with no CORS headers (the browser gives up), and nothing goes upstream.
    if (corsOrigins.length === 0 && isCorsPreflight(request)) return reply.code(204).send();
  });

  if (table.size === 0) {
    app.addHook('onRequest', async (request) => {
      request.principal = OPEN_PRINCIPAL;
    });
    return;
  }

  app.addHook('onRequest', async (request, reply) => {
    const tokens = presentedTokens(request);
    if (tokens.length > 1) {
      return reply.send(new BusError('INVALID_FRAME', 'more than one token: give it once, in the Authorization header or in ?token='));
    }
    const presented = tokens[0] ?? null;
    const principal = presented === null ? null : table.resolve(presented);
    request.principal = principal ?? ANONYMOUS_PRINCIPAL;
    // Browsers send preflights without credentials; CORS answers them.
    if (isCorsPreflight(request)) return;

    const requirement = requirementFor(
      request.method,
      request.routeOptions.url,
      (request.params ?? {}) as Record<string, unknown>,
      request.routeOptions.config?.access,
    );
    if (requirement.kind === 'open') return;
    if (principal === null) {
      request.log.info({ url: request.routeOptions.url, reason: presented === null ? 'missing' : 'unknown' }, 'refused: no valid token');
      return reply.send(tokenRefusal(presented));
    }
    if (!satisfies(principal, requirement)) {
      request.log.info({ url: request.routeOptions.url, token: principal.name }, 'refused: token lacks the right');
      return reply.send(new BusError('FORBIDDEN', describeRequirement(requirement)));
    }
  });
}, { name: 'brainstem-auth' });
