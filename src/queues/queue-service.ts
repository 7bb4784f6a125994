import { randomUUID } from 'node:crypto';
import { BusError } from '../bus/protocol.js';
import { streamedOf, type StoredOptions } from './bullmq-adapter.js';
import { CancelledTasks } from './cancelled-tasks.js';
import type { PullId, TaskConsumer } from './credit-ledger.js';
import { Delivery } from './delivery.js';
import { ForeignSettlements } from './foreign-settlements.js';
import { LeaseRenewal } from './lease-renewal.js';
import { QueueAdmin } from './queue-admin.js';
import { QueueContext, type QueueServiceOptions } from './queue-context.js';
import type { QueueDetail, QueueSummary, RevokeReason, TaskState, TaskView } from './queue-types.js';
import { QueueViews } from './queue-views.js';
import { Recovery } from './recovery.js';
import { Settlement } from './settlement.js';
import { StoreGuard } from './store-guard.js';
import { TaskControl } from './task-control.js';
import type { TaskOptions } from './task-options.js';

export type { QueueLogger } from './queue-logger.js';
export type { QueueServiceOptions } from './queue-context.js';
export * from './queue-types.js';
export { TaskStateError } from './task-state-error.js';

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
 * The organ's parts: delivery.ts (the pull path), settlement.ts (ack, fail,
 * give-backs), lease-renewal.ts, recovery.ts, queue-views.ts and
 * queue-admin.ts (REST), sharing queue-context.ts; bullmq-adapter.ts is the
 * only one that relies on bullmq's internals.
 */
export class QueueService {
  private readonly ctx: QueueContext;
  private readonly delivery: Delivery;
  private readonly settlement: Settlement;
  private readonly renewal: LeaseRenewal;
  private readonly recovery: Recovery;
  private readonly views: QueueViews;
  private readonly admin: QueueAdmin;
  private readonly control: TaskControl;
  /** Queue names each consumer has used, bounded by maxPerConsumer. */
  private readonly namesUsed = new Map<string, Set<string>>();

  constructor(options: QueueServiceOptions) {
    const store = new StoreGuard(options.queueConnection, options.storeTimeoutMs, options.log);
    const foreign = new ForeignSettlements({
      connection: options.workerConnection, createConnection: options.createEventConnection,
      prefix: options.prefix, log: options.log, onOutcome: options.onOutcome,
    });
    this.ctx = new QueueContext(options, store, foreign);
    this.delivery = new Delivery(this.ctx);
    this.settlement = new Settlement(this.ctx, this.delivery);
    this.renewal = new LeaseRenewal(this.ctx);
    this.recovery = new Recovery(this.ctx, this.delivery);
    const cancelled = new CancelledTasks(options.queueConnection, options.prefix, Math.max(options.keepCompleted, MIN_CANCELLED_KEPT));
    this.views = new QueueViews(this.ctx, cancelled);
    this.admin = new QueueAdmin(this.ctx, cancelled);
    this.control = new TaskControl(this.ctx, cancelled);
  }

  /** Starts recovering what an earlier run or a Redis restart left astray. */
  start(): void {
    this.recovery.start();
  }

  get leasedCount(): number {
    return this.ctx.leases.size;
  }

  /** Stores a task; resolves with its id only once Redis has it. */
  async enqueue(name: string, payload: unknown, options: TaskOptions = {}): Promise<string> {
    if (this.ctx.closing) throw new BusError('UNAVAILABLE', 'the gateway is shutting down: the task was not stored');
    const runtime = this.ctx.runtimeForUse(name);
    const policy = this.ctx.policyOf(name);
    const { keepCompleted } = this.ctx.options;
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
      await this.ctx.options.openStream?.(name, opts.jobId as string, options.traceparent);
    }
    const job = await this.ctx.store.run(() => runtime.queue.add(name, payload, opts));
    return job.id as string;
  }

  /** One credit: the next task of `name` goes to this consumer, now or when one arrives. */
  pull(consumer: TaskConsumer, name: string, pullId: PullId): void {
    if (this.ctx.closing) throw new BusError('UNAVAILABLE', 'the gateway is shutting down');
    const runtime = this.ctx.runtimeForUse(name);
    this.ctx.ledger.grant(name, consumer, pullId);
    this.delivery.pump(runtime);
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
    if (names.size >= this.ctx.options.maxPerConsumer) {
      this.ctx.options.onQueueLimit?.();
      throw new BusError('TOO_MANY_QUEUES', `this connection has used ${names.size} queue names (QUEUE_MAX_PER_CONNECTION): ${JSON.stringify(name)} was not opened`);
    }
    names.add(name);
  }

  /** Queues live on this gateway now (idle ones are evicted). */
  get liveQueueCount(): number {
    return this.ctx.runtimes.size;
  }

  /** A connection went away: its credits end and its tasks go back at once. */
  release(consumerId: string, reason?: string): void {
    this.namesUsed.delete(consumerId);
    this.settlement.release(consumerId, reason);
  }

  /** As release, the holder told first with a `revoke` frame for each task (its process's heartbeat lapsed). */
  revokeAll(consumerId: string, reason: RevokeReason): void {
    this.settlement.release(consumerId, reason, reason);
  }

  /** The task `consumerId` holds by this id, if any (v3: only its holder streams its output). */
  heldTask(consumerId: string, taskId: string): { queue: string; attempt: number; stream: boolean } | undefined {
    const lease = this.ctx.leases.find(consumerId, taskId);
    return lease && { queue: lease.queue, attempt: lease.job.attemptsStarted, stream: streamedOf(lease.job) };
  }

  /** What a connection waits for and holds (`GET /services`). */
  holdings(consumerId: string): { pulls: { queue: string; credits: number }[]; tasks: { queue: string; taskId: string }[] } {
    return { pulls: this.ctx.ledger.pullsOf(consumerId), tasks: this.ctx.leases.heldBy(consumerId) };
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
    const { ctx } = this;
    ctx.closing = true;
    this.renewal.stop();
    this.recovery.stop();
    await Promise.allSettled([...ctx.pending]);
    for (const consumerId of ctx.leases.consumers()) this.release(consumerId, 'gateway shutting down');
    await Promise.allSettled([...ctx.pending]);
    const runtimes = [...ctx.runtimes.values()];
    // Closing the fetchers ends their waits on markers; a fetch that still
    // brings a task gives it back (delivery.ts).
    const fetching = ctx.closeFetching();
    await Promise.allSettled([...this.delivery.fetches]);
    await fetching.catch(() => undefined);
    await Promise.allSettled([...ctx.pending]);
    await Promise.allSettled(runtimes.map((r) => r.queue.close()));
    ctx.foreign.close();
  }
}
