import { extendLocks, moveManyToActive, moveToActive, type Fetched, type FetchBehind, type JobHost, type TaskJob } from './bullmq-adapter.js';
import { TickBatch } from './tick-batch.js';
import type { MarkerWatch } from './marker-watch.js';

/**
 * Fetches one queue's tasks as BullMQ's Worker does (moveToActive while
 * tasks flow; once drained, a wait on the queue's marker first), over the
 * gateway's shared connections: no Redis connection of its own. The
 * fetches started in one tick move their jobs to active in one Redis call.
 */
export class QueueFetcher {
  /** Prefix of the lock tokens of its fetches (recovery tells this gateway's tokens by it). */
  readonly id: string;
  private drained = false;
  /** When the next delayed task is due (0: none known). */
  private blockUntil = 0;
  private closed = false;
  /** The drained fetch now waiting on the marker (one at a time while the queue is empty). */
  private parked: { token: string; resolve(woke: { behind: Promise<Fetched> }): void } | null = null;
  /** This tick's fetches: one is BullMQ's own call; several are one call of the same script once per token. */
  private readonly fetches: TickBatch<string, Fetched>;

  constructor(readonly host: JobHost, private readonly markers: MarkerWatch, private readonly drainDelayMs: number, id: string) {
    this.id = id;
    this.fetches = new TickBatch({ one: (token) => moveToActive(host, token), many: (tokens) => moveManyToActive(host, tokens) });
  }

  async getNextJob(token: string): Promise<TaskJob | undefined> {
    if (this.closed) return undefined;
    if (this.drained) {
      const woke = await this.park(token);
      if ('behind' in woke) {
        // Sent: what it brings is answered even once closed (and given back).
        const { job, delayUntil } = await woke.behind;
        this.blockUntil = delayUntil;
        // The queue's marker may have been taken meanwhile for a wait that was no more: fetch before waiting again.
        this.drained = false;
        return job;
      }
      if (this.closed) return undefined;
      // A marker for a delayed task: nothing to fetch before it is due.
      if (woke.score !== null && woke.score > Date.now() + 1) {
        this.blockUntil = woke.score;
        return undefined;
      }
    }
    const { job, delayUntil } = await this.fetches.add(token);
    this.blockUntil = delayUntil;
    this.drained = job === undefined;
    return job;
  }

  /** A completion's fetch of the next task found none: the next fetch waits on the marker first, as after its own. */
  drainedAfter({ job, delayUntil }: Fetched): void {
    if (job) return;
    this.drained = true;
    this.blockUntil = delayUntil;
  }

  /**
   * The drained fetch waits for the queue's marker, or for an enqueue of
   * this queue to fetch for it (`fetchBehind`), whichever comes first.
   */
  private park(token: string): Promise<{ score: number | null } | { behind: Promise<Fetched> }> {
    const now = Date.now();
    const wait = this.blockUntil > now ? Math.min(this.drainDelayMs, this.blockUntil - now) : this.drainDelayMs;
    return new Promise((resolve) => {
      const parked = { token, resolve };
      this.parked = parked;
      void this.markers.wait(this.host.name, this.host.markerKey, wait).then((score) => {
        if (this.parked === parked) this.parked = null;
        resolve({ score });
      });
    });
  }

  /**
   * The fetch waiting on the marker, if one is, given to the enqueues about
   * to be sent: its fetch goes right behind them (one round trip for the
   * tasks stored and the first of them fetched), and its marker wait ends.
   */
  fetchBehind(): FetchBehind | undefined {
    const { parked } = this;
    if (!parked || this.closed) return undefined;
    this.parked = null;
    let settle!: Pick<FetchBehind, 'resolve' | 'reject'>;
    const behind = new Promise<Fetched>((resolve, reject) => {
      settle = { resolve, reject };
    });
    parked.resolve({ behind });
    this.markers.cancel(this.host.name);
    return { host: this.host, token: parked.token, ...settle };
  }

  extendJobLocks(ids: string[], tokens: string[], ms: number): Promise<string[]> {
    return extendLocks(this.host, ids, tokens, ms);
  }

  close(): void {
    this.closed = true;
    this.markers.cancel(this.host.name);
  }
}
