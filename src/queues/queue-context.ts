import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  GATEWAY_WORKER_NAME, jobHost, metaKey, metaPattern, moveStalledToWait, queueNameOfMetaKey,
  type FetchOptions, type StoredOptions, type TaskJob, type TaskQueue,
} from './bullmq-adapter.js';
import { MarkerWatch } from './marker-watch.js';
import { QueueFetcher } from './queue-fetcher.js';
import { BusError } from '../bus/protocol.js';
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
  /** A new connection like `workerConnection`, for a blocking read (the queues' markers, their event streams). */
  createEventConnection(): Redis;
  prefix: string;
  defaults: RetryPolicy;
  overrides: QueueOverrides;
  leaseMs: number;
  stalledCheckMs: number;
  /** A queue unused this long, with no pull waiting and no task held, drops its runtime. */
  idleMs: number;
  /** Live queues at most; past it a new name is TOO_MANY_QUEUES. */
  maxLive: number;
  /** Distinct queue names one consumer may use; past it TOO_MANY_QUEUES. */
  maxPerConsumer: number;
  keepCompleted: number;
  storeTimeoutMs: number;
  log: QueueLogger;
  /** Called for every acked, failed and dead task (the plugin publishes it on the bus). */
  onOutcome(outcome: TaskOutcome): void;
  /** v3: opens the output stream of a task enqueued with `opts.stream`, before the task is stored. */
  openStream?(queue: string, taskId: string, traceparent: string | undefined): Promise<void>;
  /** Called for every task handed to a worker, with how long it waited since it could run. */
  onDelivered?(queue: string, waitMs: number, traceparent: string | undefined): void;
  /** Called for every fetched task that could not be delivered (failed as undeliverable). */
  onUndeliverable?(queue: string): void;
  /** Called for every queue refused by QUEUE_MAX_LIVE or QUEUE_MAX_PER_CONNECTION. */
  onQueueLimit?(): void;
  /** Called for every queue whose runtime was dropped as idle. */
  onEvicted?(queue: string): void;
}

/** One queue name's BullMQ objects and fetch bookkeeping. */
export interface QueueRuntime {
  name: string;
  queue: TaskQueue;
  /** Created on first pull; it shares the gateway's connections. */
  fetcher: QueueFetcher | null;
  /** getNextJob calls in flight. */
  fetching: number;
  /** When it was last used (Date.now()): idle ones are evicted. */
  lastUsed: number;
  /** The last fetch found nothing: fetch one at a time (a blocking wait) until tasks flow. */
  idle: boolean;
  renewing: boolean;
}

/** The wait on an empty queue's marker, in ms; a new task wakes it at once. */
const DRAIN_DELAY_MS = 5000;
/**
 * The BullMQ queue whose backend lends its connection to every queue's
 * scripts: it holds no tasks, and its prefix keeps its own keys out of the
 * queues' (scans for `PREFIX:*:meta` never list it).
 */
const TEMPLATE_QUEUE = 'gateway';
const TEMPLATE_PREFIX = 'brainstem-template';

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
  readonly markers: MarkerWatch;
  private readonly template: TaskQueue;
  private readonly fetchOptions: FetchOptions;
  /** Tokens of this gateway's fetches start with it: recovery tells its own orphans by it. */
  private readonly fetcherId = randomUUID();
  private readonly stalledTimer: NodeJS.Timeout;
  private readonly evictionTimer: NodeJS.Timeout;

  constructor(
    readonly options: QueueServiceOptions,
    readonly store: StoreGuard,
    readonly foreign: ForeignSettlements,
  ) {
    this.markers = new MarkerWatch(options.createEventConnection(), options.workerConnection, options.log);
    this.fetchOptions = {
      prefix: options.prefix,
      lockDuration: options.leaseMs,
      stalledInterval: options.stalledCheckMs,
      // Deliveries are counted against each task's own attempts (delivery.ts).
      maxStalledCount: MAX_ATTEMPTS,
      // Recorded on each job it fetches: a settlement by this name is a gateway's own (foreign-settlements.ts).
      name: GATEWAY_WORKER_NAME,
      // A producer's own backoff strategy is unknown here: its delay is taken as fixed.
      settings: { backoffStrategy: (_attempts: number, _type?: string, _err?: Error, job?: { opts: StoredOptions }) => fixedDelayOf(job?.opts) },
    };
    this.template = new Queue<unknown, unknown, string>(TEMPLATE_QUEUE, {
      connection: options.workerConnection, prefix: TEMPLATE_PREFIX, skipVersionCheck: true,
    });
    this.template.on('error', (err: Error) => this.log.debug({ err: err.message }, 'queues: redis error'));
    // One stalled check for every queue with a fetcher: tasks whose lease
    // expired (a gateway died holding them) go back to wait.
    this.stalledTimer = setInterval(() => this.checkStalled(), options.stalledCheckMs);
    this.stalledTimer.unref();
    this.evictionTimer = setInterval(() => this.evictIdle(), Math.max(50, Math.floor(options.idleMs / 4)));
    this.evictionTimer.unref();
  }

  get log(): QueueLogger {
    return this.options.log;
  }

  /**
   * The runtime of a queue about to be used (enqueue, pull): past
   * QUEUE_MAX_LIVE live queues, idle ones are evicted first, and a new
   * name is refused when none is. Reads (views, admin) use `runtime`.
   */
  runtimeForUse(name: string): QueueRuntime {
    if (!this.runtimes.has(name) && this.runtimes.size >= this.options.maxLive) {
      this.evictIdle(0);
      if (this.runtimes.size >= this.options.maxLive) {
        this.options.onQueueLimit?.();
        throw new BusError('TOO_MANY_QUEUES', `this gateway keeps ${this.options.maxLive} queues live (QUEUE_MAX_LIVE) and none is idle: ${JSON.stringify(name)} was not opened`);
      }
    }
    return this.runtime(name);
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
      runtime = { name, queue, fetcher: null, fetching: 0, lastUsed: Date.now(), idle: true, renewing: false };
      this.runtimes.set(name, runtime);
      this.foreign.watch(queue);
    }
    runtime.lastUsed = Date.now();
    return runtime;
  }

  /**
   * Drops the runtimes of queues unused for `idleMs` with no pull waiting,
   * no task held and no fetch or settlement in flight: a queue name costs
   * nothing once idle, and its next use opens it again.
   */
  evictIdle(idleMs = this.options.idleMs): number {
    const before = Date.now() - idleMs;
    let evicted = 0;
    for (const runtime of this.runtimes.values()) {
      if (runtime.lastUsed > before || runtime.fetching > 0 || runtime.renewing) continue;
      if (this.ledger.credits(runtime.name) > 0 || this.leases.inQueue(runtime.name).length > 0) continue;
      this.runtimes.delete(runtime.name);
      runtime.fetcher?.close();
      this.foreign.unwatch(runtime.queue);
      void runtime.queue.close().catch(() => undefined);
      this.options.onEvicted?.(runtime.name);
      evicted++;
    }
    return evicted;
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

  /** The queue's fetcher, created on first use. */
  fetcherOf(runtime: QueueRuntime): QueueFetcher {
    runtime.fetcher ??= new QueueFetcher(jobHost(this.template, runtime.name, this.fetchOptions), this.markers, DRAIN_DELAY_MS, this.fetcherId);
    return runtime.fetcher;
  }

  private checkStalled(): void {
    for (const runtime of this.runtimes.values()) {
      if (!runtime.fetcher || this.closing) continue;
      // One catch for the check and its report: a timer's rejection would end the process.
      moveStalledToWait(runtime.fetcher.host).then((stalled) => {
        if (stalled.length > 0) this.log.warn({ queue: runtime.name, stalled }, 'queues: tasks returned after their lease expired');
      }).catch((err: unknown) => this.log.debug({ err: (err as Error).message, queue: runtime.name }, 'queues: stalled check failed'));
    }
  }

  /** Stops the stalled check and the marker watch, and closes the template queue. */
  async closeFetching(): Promise<void> {
    clearInterval(this.stalledTimer);
    clearInterval(this.evictionTimer);
    for (const runtime of this.runtimes.values()) runtime.fetcher?.close();
    this.markers.close();
    await this.template.close();
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
