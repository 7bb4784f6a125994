import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  GATEWAY_WORKER_NAME, metaKey, metaPattern, queueNameOfMetaKey, readJobsSafely, type StoredOptions, type TaskJob, type TaskQueue, type TaskWorker,
} from './bullmq-adapter.js';
import { CreditLedger } from './credit-ledger.js';
import type { ForeignSettlements } from './foreign-settlements.js';
import { LeaseTable } from './lease-table.js';
import type { QueueLogger } from './queue-logger.js';
import type { StoreGuard } from './store-guard.js';
import { MAX_ATTEMPTS, type QueueOverrides, type RetryPolicy } from './task-options.js';
import type { TaskOutcome } from './task-outcome.js';

export interface QueueServiceOptions {
  /** Fails fast while Redis is down: enqueue and REST answer UNAVAILABLE at once. */
  queueConnection: Redis;
  /** Retries forever (maxRetriesPerRequest null): fetching, ack, fail and lock renewal wait for Redis. */
  workerConnection: Redis;
  /** A new connection like `workerConnection`, for a queue's event stream (a blocking read). */
  createEventConnection(): Redis;
  prefix: string;
  defaults: RetryPolicy;
  overrides: QueueOverrides;
  leaseMs: number;
  stalledCheckMs: number;
  keepCompleted: number;
  storeTimeoutMs: number;
  log: QueueLogger;
  /** Called for every acked, failed and dead task (the plugin publishes it on the bus). */
  onOutcome(outcome: TaskOutcome): void;
  /** Called for every task handed to a worker, with how long it waited since it could run. */
  onDelivered?(queue: string, waitMs: number, traceparent: string | undefined): void;
  /** Called for every fetched task that could not be delivered (failed as undeliverable). */
  onUndeliverable?(queue: string): void;
}

/** One queue name's BullMQ objects and fetch bookkeeping. */
export interface QueueRuntime {
  name: string;
  queue: TaskQueue;
  /** Created on first pull: each holds a blocking Redis connection. */
  worker: TaskWorker | null;
  /** getNextJob calls in flight. */
  fetching: number;
  /** The last fetch found nothing: fetch one at a time (a blocking wait) until tasks flow. */
  idle: boolean;
  renewing: boolean;
}

/** BullMQ's blocking wait on an empty queue, in seconds; a new task wakes it at once. */
const DRAIN_DELAY_S = 5;

function fixedDelayOf(opts: StoredOptions | undefined): number {
  const backoff = opts?.backoff;
  const delay = typeof backoff === 'number' ? backoff : backoff?.delay;
  return typeof delay === 'number' && delay >= 0 ? delay : 0;
}

/**
 * What delivery, settlement, renewal, recovery and the views share: the
 * queues' BullMQ objects, who pulls (ledger) and who holds what (leases),
 * lock tokens with work in flight, and the work close() waits for.
 */
export class QueueContext {
  readonly runtimes = new Map<string, QueueRuntime>();
  readonly ledger = new CreditLedger();
  readonly leases = new LeaseTable<TaskJob>();
  /** Settlements (ack, fail, give-backs) in flight: close() waits for them. */
  readonly pending = new Set<Promise<unknown>>();
  /** Lock tokens with a fetch, ack, fail or give-back in flight: their tasks are accounted for. */
  readonly busyTokens = new Set<string>();
  closing = false;

  constructor(
    readonly options: QueueServiceOptions,
    readonly store: StoreGuard,
    readonly foreign: ForeignSettlements,
  ) {}

  get log(): QueueLogger {
    return this.options.log;
  }

  runtime(name: string): QueueRuntime {
    let runtime = this.runtimes.get(name);
    if (!runtime) {
      const queue = new Queue<unknown, unknown, string>(name, {
        connection: this.options.queueConnection,
        prefix: this.options.prefix,
        skipVersionCheck: true,
      });
      queue.on('error', (err: Error) => this.log.debug({ err: err.message, queue: name }, 'queues: redis error'));
      runtime = { name, queue, worker: null, fetching: 0, idle: true, renewing: false };
      this.runtimes.set(name, runtime);
      this.foreign.watch(queue);
    }
    return runtime;
  }

  /** The runtime of a queue that exists (used since start, or known to Redis); null otherwise. */
  async knownRuntime(name: string): Promise<QueueRuntime | null> {
    const existing = this.runtimes.get(name);
    if (existing) return existing;
    const exists = await this.store.run(() => this.options.queueConnection.exists(metaKey(this.options.prefix, name)));
    return exists ? this.runtime(name) : null;
  }

  /** Queues known to Redis (they have a meta key) and those used since start. */
  async queueNames(): Promise<string[]> {
    const names = new Set(this.runtimes.keys());
    let cursor = '0';
    do {
      const [next, keys] = await this.options.queueConnection.scan(cursor, 'MATCH', metaPattern(this.options.prefix), 'COUNT', 1000);
      cursor = next;
      for (const key of keys) names.add(queueNameOfMetaKey(this.options.prefix, key));
    } while (cursor !== '0');
    return [...names].sort();
  }

  /** The queue's manual BullMQ worker, created on first use. */
  workerOf(runtime: QueueRuntime): TaskWorker {
    if (runtime.worker) return runtime.worker;
    const worker = new Worker<unknown, unknown, string>(runtime.name, null, {
      connection: this.options.workerConnection,
      prefix: this.options.prefix,
      lockDuration: this.options.leaseMs,
      stalledInterval: this.options.stalledCheckMs,
      // Deliveries are counted against each task's own attempts (delivery.ts).
      maxStalledCount: MAX_ATTEMPTS,
      // Recorded on each job it fetches: a settlement by this name is a gateway's own (foreign-settlements.ts).
      name: GATEWAY_WORKER_NAME,
      // A producer's own backoff strategy is unknown here: its delay is taken as fixed.
      settings: { backoffStrategy: (_attempts: number, _type?: string, _err?: Error, job?: { opts: StoredOptions }) => fixedDelayOf(job?.opts) },
      drainDelay: DRAIN_DELAY_S,
      autorun: false,
      skipVersionCheck: true,
    });
    readJobsSafely(worker);
    worker.on('error', (err: Error) => this.log.debug({ err: err.message, queue: runtime.name }, 'queues: worker redis error'));
    worker.on('stalled', (taskId: string) => {
      this.log.warn({ queue: runtime.name, taskId }, 'queues: task returned after its lease expired');
    });
    // Manual processing starts neither the stalled check nor lock renewal: the
    // stalled check returns tasks a crashed gateway held; leases are renewed (lease-renewal.ts).
    void worker.startStalledCheckTimer();
    runtime.worker = worker;
    return worker;
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

  policyOf(name: string): RetryPolicy & { timeout?: number } {
    const override = this.options.overrides[name];
    return {
      attempts: override?.attempts ?? this.options.defaults.attempts,
      backoff: override?.backoff ?? this.options.defaults.backoff,
      timeout: override?.timeout,
    };
  }
}
