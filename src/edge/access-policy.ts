import type { Principal, Right } from '../bus/principal.js';

/**
 * What a request needs when tokens are configured, decided from the route
 * that will answer it (its registered pattern, not the raw URL, so that an
 * encoded path cannot slip past the rules).
 */
export type Requirement =
  | { kind: 'open' }
  | { kind: 'token' }
  | { kind: 'admin' }
  | { kind: 'right'; right: Right; subject: string };

/** A route may declare its own rule (the edge does so for proxied routes). */
export type DeclaredAccess = 'open' | 'token';

const SAFE_METHODS = new Set(['GET', 'HEAD']);

function under(routeUrl: string, prefix: string): boolean {
  return routeUrl === prefix || routeUrl.startsWith(`${prefix}/`);
}

export function requirementFor(
  method: string,
  routeUrl: string | undefined,
  params: Record<string, unknown>,
  declared?: DeclaredAccess,
): Requirement {
  if (declared === 'open') return { kind: 'open' };
  if (declared === 'token') return { kind: 'token' };
  // Not found: the 404 answers, and it tells nothing.
  if (routeUrl === undefined) return { kind: 'open' };

  if (routeUrl === '/metrics') return { kind: 'admin' };

  // Services post their heartbeats: any known token, no admin.
  if (under(routeUrl, '/heartbeat') || under(routeUrl, '/heartbeats')) return { kind: 'token' };

  if (under(routeUrl, '/bus')) {
    if (SAFE_METHODS.has(method)) return { kind: 'token' };
    // The route itself checks the publish right on the message's type.
    if (method === 'POST' && routeUrl === '/bus/publish') return { kind: 'token' };
    return { kind: 'admin' };
  }

  if (under(routeUrl, '/queues')) {
    if (SAFE_METHODS.has(method)) return { kind: 'token' };
    // Enqueue over HTTP needs what the enqueue frame needs; every other
    // mutation (retry, pause, resume, remove) is the operator's.
    if (method === 'POST' && routeUrl === '/queues/:name/tasks' && typeof params.name === 'string') {
      return { kind: 'right', right: 'queue', subject: params.name };
    }
    return { kind: 'admin' };
  }

  return { kind: 'open' };
}

/** Does a principal with a known token meet the requirement? */
export function satisfies(principal: Principal, requirement: Requirement): boolean {
  switch (requirement.kind) {
    case 'open':
    case 'token':
      return true;
    case 'admin':
      return principal.admin;
    case 'right':
      return principal.may(requirement.right, requirement.subject);
  }
}

export function describeRequirement(requirement: Requirement): string {
  switch (requirement.kind) {
    case 'admin':
      return 'this needs an admin token';
    // The same words as the bus's FORBIDDEN for the same right.
    case 'right':
      if (requirement.right === 'queue') return `not allowed to use queue ${requirement.subject}`;
      if (requirement.right === 'subscribe') return `not allowed to subscribe to ${requirement.subject}`;
      return `not allowed to publish ${requirement.subject}`;
    default:
      return 'not allowed';
  }
}
