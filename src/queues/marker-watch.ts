import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { popMarkers } from './bullmq-adapter.js';
import type { QueueLogger } from './queue-logger.js';

interface Waiter {
  markerKey: string;
  deadline: number;
  /** From then on it may end with the others due: waits that end together cost one new command. */
  endsFrom: number;
  resolve(score: number | null): void;
}

const RETRY_MS = 1000;
/** The part of a wait's timeout by which it may end early, with the waits due before it. */
const EARLY_END_SHARE = 0.1;
/**
 * After a marker, the next command waits this long per key it names (none
 * below a millisecond in all): while tasks arrive on many queues, each
 * command then takes many markers instead of one.
 */
const PAUSE_MS_PER_KEY = 0.002;

/**
 * One blocking Redis connection that waits on the BullMQ markers of every
 * queue with a pull waiting (BZPOPMIN takes many keys), instead of one
 * blocking connection per queue. A queue's wait resolves with the
 * marker's score (0: work now; a time: the next delayed task) or null at
 * its deadline. A wait on a key the blocked command lacks wakes it through
 * a key of its own, so the next command includes the new key. Each
 * command costs Redis and the gateway time in the number of keys, so the
 * watch issues few: waits that time out close together end together, a
 * blocked command is woken once however many keys are added, and a marker
 * popped sends one look at all the other keys for the rest of a burst.
 */
export class MarkerWatch {
  private readonly waiters = new Map<string, Waiter>();
  private readonly wakeKey = `brainstem:wake:${randomUUID()}`;
  /** Marker keys of the command now blocked. */
  private watching = new Set<string>();
  /** A wake was sent to the command now blocked: one is enough. */
  private woken = false;
  private running = false;
  private closed = false;

  constructor(private readonly blocking: Redis, private readonly shared: Redis, private readonly log: QueueLogger) {}

  /** Waits up to `timeoutMs` for the queue's marker; one wait per queue at a time. */
  wait(queue: string, markerKey: string, timeoutMs: number): Promise<number | null> {
    if (this.closed) return Promise.resolve(null);
    this.waiters.get(queue)?.resolve(null);
    return new Promise((resolve) => {
      const deadline = Date.now() + timeoutMs;
      this.waiters.set(queue, { markerKey, deadline, endsFrom: deadline - timeoutMs * EARLY_END_SHARE, resolve });
      if (!this.running) void this.run();
      else if (!this.watching.has(markerKey)) this.wake();
    });
  }

  /** Ends the queue's wait at once (its runtime is going away). */
  cancel(queue: string): void {
    const waiter = this.waiters.get(queue);
    if (!waiter) return;
    this.waiters.delete(queue);
    waiter.resolve(null);
  }

  get size(): number {
    return this.waiters.size;
  }

  close(): void {
    this.closed = true;
    for (const waiter of this.waiters.values()) waiter.resolve(null);
    this.waiters.clear();
    this.blocking.disconnect();
  }

  private wake(): void {
    if (this.woken) return;
    this.woken = true;
    // Expiring: a wake left when the gateway stops is not kept.
    this.shared.multi().zadd(this.wakeKey, 0, 'w').pexpire(this.wakeKey, 60_000).exec()
      .catch((err: unknown) => this.log.debug({ err }, 'queues: waking the marker watch failed'));
  }

  private async run(): Promise<void> {
    this.running = true;
    while (!this.closed && this.waiters.size > 0) {
      const now = Date.now();
      let deadline = Infinity;
      const byKey = new Map<string, string>();
      for (const [queue, waiter] of this.waiters) {
        byKey.set(waiter.markerKey, queue);
        deadline = Math.min(deadline, waiter.deadline);
      }
      this.watching = new Set(byKey.keys());
      this.woken = false;
      const seconds = Math.max(0.01, (deadline - now) / 1000);
      try {
        const popped = await this.blocking.bzpopmin(this.wakeKey, ...byKey.keys(), seconds.toFixed(3));
        if (popped && popped[0] !== this.wakeKey) {
          const [key, , score] = popped;
          this.resolve(byKey.get(key), Number(score));
          byKey.delete(key);
          if (byKey.size > 0) {
            for (const [other, otherScore] of await popMarkers(this.blocking, [...byKey.keys()])) this.resolve(byKey.get(other), otherScore);
          }
          const pause = this.waiters.size * PAUSE_MS_PER_KEY;
          if (pause >= 1) await delay(pause);
        }
      } catch (err) {
        if (this.closed) break;
        this.log.debug({ err: (err as Error).message }, 'queues: waiting on queue markers failed; retrying');
        await delay(RETRY_MS);
      }
      const after = Date.now();
      for (const [queue, waiter] of this.waiters) {
        if (waiter.endsFrom <= after) {
          this.waiters.delete(queue);
          waiter.resolve(null);
        }
      }
    }
    this.watching = new Set();
    this.running = false;
  }

  private resolve(queue: string | undefined, score: number): void {
    const waiter = queue === undefined ? undefined : this.waiters.get(queue);
    if (queue === undefined || !waiter) return;
    this.waiters.delete(queue);
    waiter.resolve(score);
  }
}
