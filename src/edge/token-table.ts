import { createHash, timingSafeEqual } from 'node:crypto';
import { isGatewayTopic, type Principal, type Right } from '../bus/principal.js';
import { patternCovers, patternMatches } from '../bus/topic.js';
import type { TokenSpec } from './edge-config.js';

/**
 * What one configured token may do. Patterns use the topic wildcards: a
 * subscription is allowed when one of the token's subscribe patterns covers
 * it entirely (`agent.>` covers `agent.*.done`), a publish or a queue when
 * one of the patterns matches the concrete name. Admin may do everything;
 * only admin may publish on the gateway's own topics, whatever the patterns.
 */
export class TokenPrincipal implements Principal {
  readonly name: string;
  readonly admin: boolean;
  private readonly publish: readonly string[];
  private readonly subscribe: readonly string[];
  private readonly queues: readonly string[];

  constructor(spec: Pick<TokenSpec, 'name' | 'admin' | 'publish' | 'subscribe' | 'queues'>) {
    this.name = spec.name;
    this.admin = spec.admin;
    this.publish = [...spec.publish];
    this.subscribe = [...spec.subscribe];
    this.queues = [...spec.queues];
  }

  may(right: Right, subject: string): boolean {
    if (this.admin) return true;
    switch (right) {
      case 'subscribe':
        return this.subscribe.some((allowed) => patternCovers(allowed, subject));
      case 'publish':
        return !isGatewayTopic(subject) && this.publish.some((allowed) => patternMatches(allowed, subject));
      case 'queue':
        return this.queues.some((allowed) => patternMatches(allowed, subject));
      default:
        return false;
    }
  }
}

/** A caller with no (or an unknown) token, on a surface that needs none. */
export const ANONYMOUS_PRINCIPAL: Principal = Object.freeze({
  name: null,
  admin: false,
  may: () => false,
});

interface Entry {
  digest: Buffer;
  principal: TokenPrincipal;
}

/**
 * The configured tokens, kept only as SHA-256 digests. A presented token
 * is hashed and compared with every entry in constant time, so neither the
 * comparison nor the position of a match tells an attacker anything.
 */
export class TokenTable {
  private readonly entries: Entry[];

  constructor(specs: readonly TokenSpec[]) {
    this.entries = specs.map((spec) => ({ digest: Buffer.from(spec.sha256, 'hex'), principal: new TokenPrincipal(spec) }));
  }

  get size(): number {
    return this.entries.length;
  }

  resolve(presented: string): TokenPrincipal | null {
    const digest = createHash('sha256').update(presented, 'utf8').digest();
    let found: TokenPrincipal | null = null;
    for (const entry of this.entries) {
      if (timingSafeEqual(entry.digest, digest) && found === null) found = entry.principal;
    }
    return found;
  }
}
