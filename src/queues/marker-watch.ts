import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { QueueLogger } from './queue-logger.js';

interface Waiter {
  markerKey: string;
  deadline: number;
  resolve(score: number | null): void;
}

const RETRY_MS = 1000;

/**
 * One blocking Redis connection that waits on the BullMQ markers of every
 * queue with a pull waiting (BZPOPMIN takes many keys), instead of one
 * blocking connection per queue. A queue's wait resolves with the
 * marker's score (0: work now; a time: the next delayed task) or null at
 * its deadline. A wait on a key the blocked command lacks wakes it through
 * a key of its own, so the next command includes the new key.
 */
export class MarkerWatch {
  private readonly waiters = new Map<string, Waiter>();
  private readonly wakeKey = `brainstem:wake:${randomUUID()}`;
  /** Marker keys of the command now blocked. */
  private watching = new Set<string>();
  private running = false;
  private closed = false;

  constructor(private readonly blocking: Redis, private readonly shared: Redis, private readonly log: QueueLogger) {}

  /** Waits up to `timeoutMs` for the queue's marker; one wait per queue at a time. */
  wait(queue: string, markerKey: string, timeoutMs: number): Promise<number | null> {
    if (this.closed) return Promise.resolve(null);
    this.waiters.get(queue)?.resolve(null);
    return new Promise((resolve) => {
      this.waiters.set(queue, { markerKey, deadline: Date.now() + timeoutMs, resolve });
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
      const seconds = Math.max(0.01, (deadline - now) / 1000);
      try {
        const popped = await this.blocking.bzpopmin(this.wakeKey, ...byKey.keys(), seconds.toFixed(3));
        if (popped) {
          const [key, , score] = popped;
          const queue = byKey.get(key);
          const waiter = queue === undefined ? undefined : this.waiters.get(queue);
          if (queue !== undefined && waiter) {
            this.waiters.delete(queue);
            waiter.resolve(Number(score));
          }
        }
      } catch (err) {
        if (this.closed) break;
        this.log.debug({ err: (err as Error).message }, 'queues: waiting on queue markers failed; retrying');
        await delay(RETRY_MS);
      }
      const after = Date.now();
      for (const [queue, waiter] of this.waiters) {
        if (waiter.deadline <= after) {
          this.waiters.delete(queue);
          waiter.resolve(null);
        }
      }
    }
    this.watching = new Set();
    this.running = false;
  }
}
