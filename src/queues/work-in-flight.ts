import { randomUUID } from 'node:crypto';

/**
 * The gateway's queue work under way, across every queue: lock tokens with
 * a fetch, ack, fail or give-back in flight (their tasks are accounted
 * for), the settlements and fetches close() waits for, and whether it is
 * closing.
 */
export class WorkInFlight {
  /** Tokens of this gateway's fetches start with it: recovery tells its own orphans by it. */
  readonly fetcherId = randomUUID();
  /** Settlements (ack, fail, give-backs) in flight. */
  readonly pending = new Set<Promise<unknown>>();
  /** Fetches in flight. */
  readonly fetches = new Set<Promise<void>>();
  closing = false;
  private readonly busyTokens = new Set<string>();
  private tokenSeq = 0;

  /** A lock token for one fetch, unique on this gateway, marked busy until `done`. */
  newToken(): string {
    const token = `${this.fetcherId}:${++this.tokenSeq}`;
    this.busyTokens.add(token);
    return token;
  }

  done(token: string): void {
    this.busyTokens.delete(token);
  }

  isBusy(token: string): boolean {
    return this.busyTokens.has(token);
  }

  /** Runs `action` with `token` marked busy: a task locked with it is accounted for meanwhile. */
  async withToken<T>(token: string, action: () => Promise<T>): Promise<T> {
    this.busyTokens.add(token);
    try {
      return await action();
    } finally {
      this.busyTokens.delete(token);
    }
  }

  /** close() waits for this. */
  track(promise: Promise<unknown>): void {
    this.pending.add(promise);
    void promise.finally(() => this.pending.delete(promise));
  }

  trackFetch(fetch: Promise<void>): void {
    this.fetches.add(fetch);
    void fetch.finally(() => this.fetches.delete(fetch));
  }
}
