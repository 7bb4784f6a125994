import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { BusError } from '../bus/protocol.js';
import type { TaskJob } from './bullmq-adapter.js';
import type { StoredOptions } from './stored-task.js';
import { CancelledTasks } from './cancelled-tasks.js';
import type { PullId, TaskConsumer } from './credit-ledger.js';
import { ForeignSettlements } from './foreign-settlements.js';
import { LeaseTable } from './lease-table.js';
import { LiveQueues } from './live-queues.js';
import { QueueAdmin } from './queue-admin.js';
import type { QueueLogger } from './queue-logger.js';
import type { QueueDetail, QueueSummary, RevokeReason, TaskState, TaskView } from './queue-types.js';
import { QueueViews } from './queue-views.js';
import { Recovery } from './recovery.js';
import { Settlement } from './settlement.js';
import { StoreGuard } from './store-guard.js';
import { TaskControl } from './task-control.js';
import type { QueueOverrides, RetryPolicy, TaskOptions } from './task-options.js';
import type { TaskOutcome } from './task-outcome.js';
import { TaskReturns } from './task-returns.js';
import { WorkInFlight } from './work-in-flight.js';

export type { QueueLogger } from './queue-logger.js';
export * from './queue-types.js';
export { TaskStateError } from './task-state-error.js';

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

/** Failed-attempt reasons kept per task. */
const REASONS_KEPT = 50;
/** Cancelled tasks' views kept per queue, at least (else QUEUE_KEEP_COMPLETED). */
const MIN_CANCELLED_KEPT = 100;

/**
 * Durable work queues on BullMQ, one BullMQ queue per name. Tasks are
 * stored before their receipt; connections pull with credits and hold
 * leases (BullMQ locks the gateway renews) until they ack or fail; a
 * connection that goes away gives its tasks back at once as a failed
 * attempt; a gateway that dies gives them back when the locks expire.
 *
 * The organ's parts: live-queue.ts (one queue: its pulls, leases and fetch
 * loop, the pull path top to bottom), live-queues.ts (the queues live here,
 * and the timers that serve them all), stored-task.ts (a fetched task read
 * once), settlement.ts (how a held task ends: ack, fail, timeout, its
 * holder gone), task-returns.ts (what goes to no worker), task-control.ts
 * (progress, cancel), recovery.ts, queue-views.ts and queue-admin.ts
 * (REST); this class owns what is gateway-wide and hands each part only
 * what it uses. bullmq-adapter.ts is the only one that relies on bullmq's
 * internals.
 */
export class QueueService {
  private readonly work = new WorkInFlight();
  /** Every queue's leases by holder. */
  private readonly holders = new LeaseTable<TaskJob>();
  private readonly store: StoreGuard;
  private readonly foreign: ForeignSettlements;
  private readonly queues: LiveQueues;
  private readonly settlement: Settlement;
  private readonly recovery: Recovery;
  private readonly views: QueueViews;
  private readonly admin: QueueAdmin;
  private readonly control: TaskControl;
  /** Queue names each consumer has used, bounded by maxPerConsumer: where its credits are. */
  private readonly namesUsed = new Map<string, Set<string>>();

  constructor(private readonly options: QueueServiceOptions) {
    const { log, onOutcome, workerConnection } = options;
    const { work, holders } = this;
    this.store = new StoreGuard(options.queueConnection, options.storeTimeoutMs, log);
    this.foreign = new ForeignSettlements({
      connection: workerConnection, createConnection: options.createEventConnection,
      prefix: options.prefix, log, onOutcome,
    });
    const returns = new TaskReturns({ workerConnection, log, work, onOutcome, onUndeliverable: options.onUndeliverable });
    this.queues = new LiveQueues({ ...options, store: this.store, foreign: this.foreign }, {
      workerConnection, log, work, holders, returns, onDelivered: options.onDelivered,
      timedOut: (lease) => this.settlement.timedOut(lease),
    });
    this.settlement = new Settlement({
      holders, work, log, onOutcome,
      // Live while it holds a lease; a settlement that failed may re-hold one on a queue evicted meanwhile.
      queueOf: (name) => this.queues.get(name) ?? this.queues.open(name),
      endConsumer: (consumerId) => this.endConsumer(consumerId),
    });
    this.recovery = new Recovery(this.queues, options, log);
    const cancelled = new CancelledTasks(options.queueConnection, options.prefix, Math.max(options.keepCompleted, MIN_CANCELLED_KEPT));
    this.views = new QueueViews(this.queues, this.store, cancelled);
    this.admin = new QueueAdmin(this.queues, this.store, cancelled, onOutcome);
    this.control = new TaskControl({
      holders, work, log, onOutcome, cancelled, store: this.store, knownQueue: (name) => this.queues.known(name),
    });
  }

  /** Starts recovering what an earlier run or a Redis restart left astray. */
  start(): void {
    this.recovery.start();
  }

  get leasedCount(): number {
    return this.holders.size;
  }

  /** Stores a task; resolves with its id only once Redis has it. */
  async enqueue(name: string, payload: unknown, options: TaskOptions = {}): Promise<string> {
    if (this.work.closing) throw new BusError('UNAVAILABLE', 'the gateway is shutting down: the task was not stored');
    const { enqueues } = this.queues.use(name);
    const policy = this.policyOf(name);
    const { keepCompleted } = this.options;
    const opts: StoredOptions = {
      jobId: options.jobId ?? randomUUID(),
      attempts: options.attempts ?? policy.attempts,
      backoff: options.backoff ?? policy.backoff,
      removeOnComplete: keepCompleted === 0 ? true : { count: keepCompleted },
      removeOnFail: false,
      stackTraceLimit: REASONS_KEPT,
    };
    if (options.priority) opts.priority = options.priority;
    if (options.delay) opts.delay = options.delay;
    if (options.replyTo) opts.replyTo = options.replyTo;
    if (options.traceparent) opts.traceparent = options.traceparent;
    const timeout = options.timeout ?? policy.timeout;
    if (timeout) opts.timeout = timeout;
    if (options.stream) {
      opts.stream = true;
      // Opened first: a follower can follow the task as soon as its receipt names it.
      await this.options.openStream?.(name, opts.jobId as string, options.traceparent);
    }
    const job = await this.store.run(() => enqueues.add({ name, data: payload, opts }));
    return job.id as string;
  }

  /** One credit: the next task of `name` goes to this consumer, now or when one arrives. */
  pull(consumer: TaskConsumer, name: string, pullId: PullId): void {
    this.admit(consumer.id, name);
    if (this.work.closing) throw new BusError('UNAVAILABLE', 'the gateway is shutting down');
    this.queues.use(name).pull(consumer, pullId);
  }

  ack(consumer: TaskConsumer, taskId: string, result: unknown): Promise<void> {
    return this.settlement.ack(consumer, taskId, result);
  }

  fail(consumer: TaskConsumer, taskId: string, reason: string): Promise<void> {
    return this.settlement.fail(consumer, taskId, reason);
  }

  /**
   * Counts `name` among the queues `consumerId` uses; refuses a new one past
   * QUEUE_MAX_PER_CONNECTION, so one client cannot open queues without end.
   */
  admit(consumerId: string, name: string): void {
    let names = this.namesUsed.get(consumerId);
    if (!names) {
      names = new Set();
      this.namesUsed.set(consumerId, names);
    }
    if (names.has(name)) return;
    if (names.size >= this.options.maxPerConsumer) {
      this.options.onQueueLimit?.();
      throw new BusError('TOO_MANY_QUEUES', `this connection has used ${names.size} queue names (QUEUE_MAX_PER_CONNECTION): ${JSON.stringify(name)} was not opened`);
    }
    names.add(name);
  }

  /** Queues live on this gateway now (idle ones are evicted). */
  get liveQueueCount(): number {
    return this.queues.size;
  }

  /** A connection went away: its credits end and its tasks go back at once. */
  release(consumerId: string, reason?: string): void {
    this.endConsumer(consumerId, reason);
    this.namesUsed.delete(consumerId);
  }

  /** As release, the holder told first with a `revoke` frame for each task (its process's heartbeat lapsed). */
  revokeAll(consumerId: string, reason: RevokeReason): void {
    this.endConsumer(consumerId, reason, reason);
  }

  /** Its credits end in every queue it used, and every task it holds goes back. */
  private endConsumer(consumerId: string, reason?: string, revoked?: RevokeReason): void {
    for (const name of this.namesUsed.get(consumerId) ?? []) this.queues.get(name)?.pulls.drop(consumerId);
    this.settlement.giveBackAll(consumerId, reason, revoked);
  }

  /** The task `consumerId` holds by this id, if any (v3: only its holder streams its output). */
  heldTask(consumerId: string, taskId: string): { queue: string; attempt: number; stream: boolean } | undefined {
    const lease = this.holders.find(consumerId, taskId);
    return lease && { queue: lease.queue, attempt: lease.job.attemptsStarted, stream: lease.facts.stream === true };
  }

  /** What a connection waits for and holds (`GET /services`). */
  holdings(consumerId: string): { pulls: { queue: string; credits: number }[]; tasks: { queue: string; taskId: string }[] } {
    const pulls: { queue: string; credits: number }[] = [];
    for (const queue of this.namesUsed.get(consumerId) ?? []) {
      const credits = this.queues.get(queue)?.pulls.creditsOf(consumerId) ?? 0;
      if (credits > 0) pulls.push({ queue, credits });
    }
    return { pulls, tasks: this.holders.heldBy(consumerId).map(({ queue, taskId }) => ({ queue, taskId })) };
  }

  /** The holder's progress on a task it holds. */
  progress(consumer: TaskConsumer, taskId: string, progress: unknown): Promise<void> {
    return this.control.progress(consumer, taskId, progress);
  }

  /** Cancels a waiting, delayed or active task; answers its view (state `cancelled`). */
  cancel(name: string, taskId: string, reason?: string): Promise<TaskView> {
    return this.control.cancel(name, taskId, reason);
  }

  listQueues(visible?: (name: string) => boolean): Promise<QueueSummary[]> {
    return this.views.listQueues(visible);
  }

  describeQueue(name: string, page: { offset: number; limit: number }): Promise<QueueDetail> {
    return this.views.describeQueue(name, page);
  }

  getTask(name: string, taskId: string): Promise<TaskView> {
    return this.views.getTask(name, taskId);
  }

  retry(name: string, taskId: string): Promise<TaskState> {
    return this.admin.retry(name, taskId);
  }

  remove(name: string, taskId: string): Promise<void> {
    return this.admin.remove(name, taskId);
  }

  pause(name: string): Promise<void> {
    return this.admin.pause(name);
  }

  resume(name: string): Promise<void> {
    return this.admin.resume(name);
  }

  /** Gives back every task still leased, then closes the BullMQ queues and workers. */
  async close(): Promise<void> {
    const { work } = this;
    work.closing = true;
    this.queues.stopRenewal();
    this.recovery.stop();
    await Promise.allSettled([...work.pending]);
    for (const consumerId of this.holders.consumers()) this.release(consumerId, 'gateway shutting down');
    await Promise.allSettled([...work.pending]);
    // Closing the fetchers ends their waits on markers; a fetch that still
    // brings a task gives it back (live-queue.ts).
    const fetching = this.queues.closeFetching();
    await work.noFetches();
    await fetching.catch(() => undefined);
    await Promise.allSettled([...work.pending]);
    await this.queues.closeQueues();
    this.foreign.close();
  }

  private policyOf(name: string): RetryPolicy & { timeout?: number } {
    const override = this.options.overrides[name];
    return {
      attempts: override?.attempts ?? this.options.defaults.attempts,
      backoff: override?.backoff ?? this.options.defaults.backoff,
      timeout: override?.timeout,
    };
  }
}
