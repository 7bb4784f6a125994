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
  closing = false;
  /** How many marks each busy token has: a settlement's fetch of the next task marks its token inside the settlement's own. */
  private readonly busyTokens = new Map<string, number>();
  /** Fetches in flight: a count, not their promises (one waits on each queue with a pull waiting). */
  private fetchCount = 0;
  /** close()'s wait for the last fetch to end, made when it waits, and what ends it. */
  private fetchesEnded: Promise<void> | null = null;
  private endFetches: (() => void) | null = null;
  private tokenSeq = 0;

  /** A lock token for one fetch, unique on this gateway, marked busy until `done`. */
  newToken(): string {
    const token = `${this.fetcherId}:${++this.tokenSeq}`;
    this.busy(token);
    return token;
  }

  /** Marks `token` busy once more: a task locked with it is accounted for until the matching `done`. */
  busy(token: string): void {
    this.busyTokens.set(token, (this.busyTokens.get(token) ?? 0) + 1);
  }

  done(token: string): void {
    const marks = this.busyTokens.get(token) ?? 0;
    if (marks > 1) this.busyTokens.set(token, marks - 1);
    else this.busyTokens.delete(token);
  }

  isBusy(token: string): boolean {
    return this.busyTokens.has(token);
  }

  /** Runs `action` with `token` marked busy. */
  async withToken<T>(token: string, action: () => Promise<T>): Promise<T> {
    this.busy(token);
    try {
      return await action();
    } finally {
      this.done(token);
    }
  }

  /** close() waits for this. */
  track(promise: Promise<unknown>): void {
    this.pending.add(promise);
    void promise.finally(() => this.pending.delete(promise));
  }

  fetchStarted(): void {
    this.fetchCount++;
  }

  fetchEnded(): void {
    if (--this.fetchCount > 0) return;
    this.endFetches?.();
    this.fetchesEnded = null;
    this.endFetches = null;
  }

  /** Resolves once no fetch is in flight (close() waits for this). */
  noFetches(): Promise<void> {
    if (this.fetchCount === 0) return Promise.resolve();
    this.fetchesEnded ??= new Promise((resolve) => {
      this.endFetches = resolve;
    });
    return this.fetchesEnded;
  }
}
