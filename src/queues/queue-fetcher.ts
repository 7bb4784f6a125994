import { extendLocks, moveManyToActive, moveToActive, type Fetched, type JobHost, type TaskJob } from './bullmq-adapter.js';
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
  /** This tick's fetches: one is BullMQ's own call; several are one call of the same script once per token. */
  private readonly fetches: TickBatch<string, Fetched>;

  constructor(readonly host: JobHost, private readonly markers: MarkerWatch, private readonly drainDelayMs: number, id: string) {
    this.id = id;
    this.fetches = new TickBatch({ one: (token) => moveToActive(host, token), many: (tokens) => moveManyToActive(host, tokens) });
  }

  async getNextJob(token: string): Promise<TaskJob | undefined> {
    if (this.closed) return undefined;
    if (this.drained) {
      const now = Date.now();
      const wait = this.blockUntil > now ? Math.min(this.drainDelayMs, this.blockUntil - now) : this.drainDelayMs;
      const score = await this.markers.wait(this.host.name, this.host.markerKey, wait);
      if (this.closed) return undefined;
      // A marker for a delayed task: nothing to fetch before it is due.
      if (score !== null && score > Date.now() + 1) {
        this.blockUntil = score;
        return undefined;
      }
    }
    const { job, delayUntil } = await this.fetches.add(token);
    this.blockUntil = delayUntil;
    this.drained = job === undefined;
    return job;
  }

  extendJobLocks(ids: string[], tokens: string[], ms: number): Promise<string[]> {
    return extendLocks(this.host, ids, tokens, ms);
  }

  close(): void {
    this.closed = true;
    this.markers.cancel(this.host.name);
  }
}
