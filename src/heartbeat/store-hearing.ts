/** The store's latest outage, as beats, checks, lists and health probes met it. */
export interface StoreOutage {
  /** ms since the epoch of the first failure. */
  since: number;
  /** ms since the epoch of the first success after it; null while it lasts. */
  until: number | null;
  /** The first failure's message. */
  error: string;
}

/**
 * Whether beats can be heard: the heartbeat store's state as every call to
 * it met it. `deafAt` is when beats could last not be heard (the boot, a
 * store failure, or the store's return after one): nobody is judged until
 * a full timeout after it, so a gateway restart or a store outage longer
 * than the timeout never gets healthy services stopped before their next
 * beat lands.
 */
export class StoreHearing {
  private deafAt = Date.now();
  private outage: StoreOutage | null = null;

  get failing(): boolean {
    return this.outage !== null && this.outage.until === null;
  }

  /** The store's latest outage, or null when it never failed since the boot. */
  get latestOutage(): StoreOutage | null {
    return this.outage && { ...this.outage };
  }

  /** Beats have been heard for a whole `timeoutMs` by `now`. */
  heardFor(now: number, timeoutMs: number): boolean {
    return now - this.deafAt >= timeoutMs;
  }

  /** A call's failure (null: a success); a failure, and the first success after one, restart the wait. */
  note(failure: unknown): void {
    if ((failure === null) !== this.failing) return;
    this.deafAt = Date.now();
    this.outage = failure === null
      ? { ...this.outage as StoreOutage, until: this.deafAt }
      : { since: this.deafAt, until: null, error: (failure as Error)?.message ?? String(failure) };
  }
}
