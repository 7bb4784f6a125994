import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import {
  eventsKeyOf, GATEWAY_WORKER_NAME, settlementsAfter, waitForStreamEntries, type TaskJob, type TaskQueue,
} from './bullmq-adapter.js';
import type { QueueLogger } from './queue-logger.js';
import { factsOf } from './stored-task.js';
import type { TaskOutcome } from './task-outcome.js';

/** How long one gateway's claim to relay a foreign settlement lasts (other gateways of a cluster skip it). */
const RELAY_CLAIM_MS = 60_000;
const BLOCK_MS = 10_000;
const READ_RETRY_MS = 1000;
/** Entries scanned per Redis call. */
const SCAN_COUNT = 1000;
/**
 * Entries a queue's stream may bring in a second and still be scanned as
 * soon as they arrive (a task makes five or more). Past that, while tasks
 * flow, each scan first waits SCAN_PAUSE_MS: one scan then covers hundreds
 * of entries instead of one call per entry, and a settlement by a raw
 * Worker is published within about that long instead of at once.
 */
const PROMPT_ENTRIES_PER_SECOND = 500;
const SCAN_PAUSE_MS = 50;
/**
 * Each read names every watched stream, so its cost grows with them: the
 * next read waits this long per stream (none below a millisecond in all),
 * and entries of many queues are then taken in one read rather than one
 * read per entry.
 */
const READ_PAUSE_MS_PER_STREAM = 0.01;

export interface ForeignSettlementsOptions {
  /** For relay claims and wakes. */
  connection: Redis;
  /** The one connection (retrying forever) that reads every watched queue's stream: a blocking read. */
  createConnection(): Redis;
  prefix: string;
  log: QueueLogger;
  onOutcome(outcome: TaskOutcome): void;
}

/**
 * Tasks completed or failed for good by someone other than a gateway — a
 * raw BullMQ Worker on the same Redis — still reach their requester and
 * the `queue.*` followers: each watched queue's BullMQ event stream is read
 * and such settlements are published as the gateway's own would be. The
 * gateway's own settlements (a gateway worker recorded as `processedBy`)
 * are left out in Redis and never published twice; in a cluster, one
 * gateway claims each relay.
 */
export class ForeignSettlements {
  /** Watched queues by their event stream's key, with the last entry read. */
  private readonly streams = new Map<string, { queue: TaskQueue; lastId: string }>();
  private readonly wakeKey = `brainstem:wake-events:${randomUUID()}`;
  private reader: Redis | null = null;
  private running = false;
  /** A wake was sent to the read now blocked: one is enough, however many queues are added. */
  private woken = false;
  private closing = false;
  private second = Date.now();
  private entriesThisSecond = 0;

  constructor(private readonly options: ForeignSettlementsOptions) {}

  /** Reads the queue's settlements from now on. */
  watch(queue: TaskQueue): void {
    const key = eventsKeyOf(queue);
    if (this.closing || this.streams.has(key)) return;
    // Stream ids are Redis's clock in ms: the events from this moment on, none from before.
    this.streams.set(key, { queue, lastId: `${Date.now()}-0` });
    if (!this.running) void this.read();
    else this.wake();
  }

  /** Stops reading the queue's stream (its runtime went idle). */
  unwatch(queue: TaskQueue): void {
    this.streams.delete(eventsKeyOf(queue));
  }

  /** The blocked read lacks a new stream: an entry on the wake stream ends it, and the next read has it. */
  private wake(): void {
    if (this.woken) return;
    this.woken = true;
    this.options.connection.multi().xadd(this.wakeKey, 'MAXLEN', '1', '*', 'w', '1').pexpire(this.wakeKey, 60_000).exec()
      .catch((err: unknown) => this.options.log.debug({ err }, 'queues: waking the event reader failed'));
  }

  private async read(): Promise<void> {
    this.running = true;
    this.reader ??= this.options.createConnection();
    const reader = this.reader;
    let wakeId = '0';
    while (!this.closing && this.streams.size > 0) {
      try {
        const streams: [string, string][] = [...this.streams].map(([key, { lastId }]) => [key, lastId]);
        this.woken = false;
        const ready = await waitForStreamEntries(reader, [...streams, [this.wakeKey, wakeId]], BLOCK_MS);
        wakeId = ready.get(this.wakeKey) ?? wakeId;
        if (Date.now() - this.second >= 1000) {
          this.second = Date.now();
          this.entriesThisSecond = 0;
        }
        if (this.entriesThisSecond > PROMPT_ENTRIES_PER_SECOND) await delay(SCAN_PAUSE_MS);
        for (const key of ready.keys()) {
          const watched = this.streams.get(key);
          if (watched) await this.scan(reader, watched);
        }
        const pause = this.streams.size * READ_PAUSE_MS_PER_STREAM;
        if (pause >= 1) await delay(pause);
      } catch (err) {
        if (this.closing) break;
        this.options.log.debug({ err: (err as Error).message }, 'queues: reading the event streams failed; retrying');
        await delay(READ_RETRY_MS);
      }
    }
    this.running = false;
  }

  private async scan(reader: Redis, watched: { queue: TaskQueue; lastId: string }): Promise<void> {
    let scanned: number;
    do {
      const batch = await settlementsAfter(reader, watched.queue, watched.lastId, SCAN_COUNT);
      watched.lastId = batch.lastId;
      scanned = batch.scanned;
      this.entriesThisSecond += scanned;
      for (const { event, jobId, failedReason } of batch.settlements) {
        if (event === 'completed') this.settled(watched.queue, 'completed', jobId);
        else this.settled(watched.queue, 'dead', jobId, failedReason);
      }
    } while (scanned === SCAN_COUNT && !this.closing);
  }

  close(): void {
    this.closing = true;
    this.streams.clear();
    // A read blocked on a connection Redis's plugin already quit never settles: not awaited.
    this.reader?.disconnect();
  }

  private settled(queue: TaskQueue, kind: 'completed' | 'dead', taskId: string, reason?: string): void {
    this.relay(queue, kind, taskId, reason).catch((err: unknown) => {
      this.options.log.warn({ err, queue: queue.name, taskId }, 'queues: could not relay a task settled outside the gateway');
    });
  }

  private async relay(queue: TaskQueue, kind: 'completed' | 'dead', taskId: string, reason?: string): Promise<void> {
    const job = await queue.getJob(taskId) as TaskJob | undefined;
    if (!job || job.processedBy === GATEWAY_WORKER_NAME) return;
    const claim = `brainstem:relayed:${this.options.prefix}:${queue.name}:${taskId}:${job.finishedOn ?? 0}`;
    const claimed = await this.options.connection.set(claim, '1', 'PX', RELAY_CLAIM_MS, 'NX');
    if (claimed !== 'OK') return;
    const source = job.processedBy ?? 'bullmq';
    const attempts = Math.max(job.attemptsStarted, job.attemptsMade, 1);
    const { replyTo, traceparent } = factsOf(job);
    if (kind === 'completed') {
      this.options.onOutcome({ kind, queue: queue.name, taskId, attempts, result: job.returnvalue ?? null, replyTo, traceparent, source });
    } else {
      const failedReason = reason ?? job.failedReason ?? 'failed';
      this.options.onOutcome({ kind, queue: queue.name, taskId, attempts, reason: failedReason, replyTo, traceparent, source });
    }
  }
}
