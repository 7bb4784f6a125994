import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import {
  GATEWAY_WORKER_NAME, replyToOf, settlementsAfter, traceparentOf, waitForQueueEvents, type TaskJob, type TaskQueue,
} from './bullmq-adapter.js';
import type { QueueLogger } from './queue-logger.js';
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

export interface ForeignSettlementsOptions {
  /** For relay claims. */
  connection: Redis;
  /** A new connection (retrying forever) for each watched queue: BullMQ's event reader blocks its own. */
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
  private readonly watchers = new Map<string, Redis>();
  private closing = false;

  constructor(private readonly options: ForeignSettlementsOptions) {}

  /** Reads the queue's settlements from now on. */
  watch(queue: TaskQueue): void {
    if (this.closing || this.watchers.has(queue.name)) return;
    const connection = this.options.createConnection();
    this.watchers.set(queue.name, connection);
    void this.read(queue, connection);
  }

  private async read(queue: TaskQueue, connection: Redis): Promise<void> {
    // Stream ids are Redis's clock in ms: the events from this moment on, none from before.
    let lastId = `${Date.now()}-0`;
    let second = Date.now();
    let entriesThisSecond = 0;
    while (!this.closing) {
      try {
        if (!(await waitForQueueEvents(connection, queue, lastId, BLOCK_MS))) continue;
        if (Date.now() - second >= 1000) {
          second = Date.now();
          entriesThisSecond = 0;
        }
        if (entriesThisSecond > PROMPT_ENTRIES_PER_SECOND) await delay(SCAN_PAUSE_MS);
        let scanned: number;
        do {
          const batch = await settlementsAfter(connection, queue, lastId, SCAN_COUNT);
          ({ lastId, scanned } = batch);
          entriesThisSecond += scanned;
          for (const { event, jobId, failedReason } of batch.settlements) {
            if (event === 'completed') this.settled(queue, 'completed', jobId);
            else this.settled(queue, 'dead', jobId, failedReason);
          }
        } while (scanned === SCAN_COUNT && !this.closing);
      } catch (err) {
        if (this.closing) return;
        this.options.log.debug({ err: (err as Error).message, queue: queue.name }, 'queues: reading the event stream failed; retrying');
        await delay(READ_RETRY_MS);
      }
    }
  }

  close(): void {
    this.closing = true;
    const watchers = [...this.watchers.values()];
    this.watchers.clear();
    // A read blocked on a connection Redis's plugin already quit never settles: not awaited.
    for (const connection of watchers) connection.disconnect();
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
    const replyTo = replyToOf(job);
    const traceparent = traceparentOf(job);
    if (kind === 'completed') {
      this.options.onOutcome({ kind, queue: queue.name, taskId, attempts, result: job.returnvalue ?? null, replyTo, traceparent, source });
    } else {
      const failedReason = reason ?? job.failedReason ?? 'failed';
      this.options.onOutcome({ kind, queue: queue.name, taskId, attempts, reason: failedReason, replyTo, traceparent, source });
    }
  }
}
