import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { BusLogger } from '../bus/frame-dispatcher.js';
import { seqOf } from './task-stream-store.js';

const BLOCK_MS = 10_000;
const RETRY_MS = 1000;
const WAKE_KEEP_MS = 60_000;

/**
 * One blocking Redis connection that waits on the streams of every task
 * followed here (XREAD takes many keys), so that chunks written through
 * another gateway reach this one's followers at once. It only says that
 * a stream grew: followers read what they miss from storage, by seq. A
 * new key wakes the blocked command through a stream of its own.
 */
export class StreamTail {
  /** The last seq known stored, per followed task. */
  private readonly known = new Map<string, number>();
  private readonly wakeKey = `brainstem:wake-streams:${randomUUID()}`;
  private wakeId = '0-0';
  private watching = new Set<string>();
  private running = false;
  private closed = false;

  constructor(
    private readonly blocking: Redis,
    private readonly shared: Redis,
    private readonly keyOf: (taskId: string) => string,
    private readonly grew: (taskId: string) => void,
    private readonly log: BusLogger,
  ) {}

  /** Watches the task's stream past `seq`. */
  watch(taskId: string, seq: number): void {
    if (this.closed) return;
    this.seen(taskId, seq);
    if (!this.running) void this.run();
    else if (!this.watching.has(taskId)) this.wake();
  }

  /** The task's stream is known stored up to `seq`. */
  seen(taskId: string, seq: number): void {
    if ((this.known.get(taskId) ?? -1) < seq) this.known.set(taskId, seq);
  }

  /** The last seq known stored of a watched task (0: none yet). */
  head(taskId: string): number {
    return Math.max(0, this.known.get(taskId) ?? 0);
  }

  unwatch(taskId: string): void {
    this.known.delete(taskId);
  }

  close(): void {
    this.closed = true;
    this.blocking.disconnect();
  }

  private wake(): void {
    this.shared.multi().xadd(this.wakeKey, 'MAXLEN', '1', '*', 'w', '1').pexpire(this.wakeKey, WAKE_KEEP_MS).exec()
      .catch((err: unknown) => this.log.debug({ err }, 'task streams: waking the stream tail failed'));
  }

  private async run(): Promise<void> {
    this.running = true;
    while (!this.closed && this.known.size > 0) {
      const taskIds = [...this.known.keys()];
      this.watching = new Set(taskIds);
      const keys = taskIds.map(this.keyOf);
      // `n-1`: past seq n (id n-0), and past the opening entry (0-1) for n = 0.
      const ids = taskIds.map((taskId) => `${this.known.get(taskId)}-1`);
      try {
        const reply = await this.blocking.xread('COUNT', 1, 'BLOCK', BLOCK_MS, 'STREAMS', this.wakeKey, ...keys, this.wakeId, ...ids);
        for (const [key, entries] of reply ?? []) {
          const last = entries[entries.length - 1];
          if (!last) continue;
          if (key === this.wakeKey) {
            this.wakeId = last[0];
            continue;
          }
          const taskId = taskIds[keys.indexOf(key)];
          if (taskId === undefined || !this.known.has(taskId)) continue;
          this.seen(taskId, seqOf(last[0]));
          this.grew(taskId);
        }
      } catch (err) {
        if (this.closed) break;
        this.log.debug({ err: (err as Error).message }, 'task streams: waiting on streams failed; retrying');
        await delay(RETRY_MS);
      }
    }
    this.watching = new Set();
    this.running = false;
  }
}
