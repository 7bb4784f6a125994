import type { FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { OPEN_PRINCIPAL, type Principal } from '../src/bus/principal.js';
import { describeRequirement, requirementFor, satisfies, type DeclaredAccess } from '../src/edge/access-policy.js';
import type { TokenSpec } from '../src/edge/edge-config.js';
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
}

/** What a token can be read from: a Fastify request, or the proxy's view of one. */
export interface TokenCarrier {
  headers: { authorization?: string | string[] | undefined };
  query: unknown;
}

/** `Authorization: Bearer X` first, else `?token=X` (a browser cannot set headers on a WebSocket). */
export function presentedToken(request: TokenCarrier): string | null {
  const header = request.headers.authorization;
  if (typeof header === 'string') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (match) return match[1] as string;
  }
  const query = request.query as Record<string, unknown> | undefined;
  const token = query?.token;
  return typeof token === 'string' && token !== '' ? token : null;
}

function isCorsPreflight(request: FastifyRequest): boolean {
  return request.method === 'OPTIONS' && request.headers.origin !== undefined
    && request.headers['access-control-request-method'] !== undefined;
}

function refuse(request: FastifyRequest, reply: FastifyReply, body: { error: string; code: string }): FastifyReply {
  // A refused WebSocket upgrade answers on the raw socket, which no HTTP
  // machinery owns any more: close it once the answer is out, or it would
  // stay open and hold app.close() forever.
  if (request.headers.upgrade !== undefined) reply.raw.once('finish', () => request.raw.socket.destroy());
  return reply.send(body);
}

/**
 * Gives every request a principal in `onRequest`, which runs before any
 * handler and before a WebSocket upgrade, and refuses what the caller may
 * not reach: 401 for a missing or unknown token, 403 for a known token
 * without the right. Per-frame rights on /bus are checked by the actions.
 */
export default fp<AuthOptions>(async function authPlugin(app, options) {
  const table = new TokenTable(options.tokens ?? []);
  app.decorateRequest('principal', null as unknown as Principal);

  if (table.size === 0) {
    app.addHook('onRequest', async (request) => {
      request.principal = OPEN_PRINCIPAL;
    });
    return;
  }

  app.addHook('onRequest', async (request, reply) => {
    const presented = presentedToken(request);
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
      return refuse(request, reply.code(401).header('www-authenticate', 'Bearer'), {
        error: presented === null ? 'a token is required (Authorization: Bearer or ?token=)' : 'unknown token',
        code: 'UNAUTHORIZED',
      });
    }
    if (!satisfies(principal, requirement)) {
      request.log.info({ url: request.routeOptions.url, token: principal.name }, 'refused: token lacks the right');
      return refuse(request, reply.code(403), { error: describeRequirement(requirement), code: 'FORBIDDEN' });
    }
  });
}, { name: 'brainstem-auth' });
