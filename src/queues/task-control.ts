import type { JobProgress } from 'bullmq';
import { BusError } from '../bus/protocol.js';
import { attemptFailure, isLostLease, replyToOf, streamFlagOf, timeoutOf, traceparentOf, type TaskJob, type TaskQueue } from './bullmq-adapter.js';
import type { CancelledTasks } from './cancelled-tasks.js';
import type { TaskConsumer } from './credit-ledger.js';
import type { Lease } from './lease-table.js';
import type { QueueContext } from './queue-context.js';
import { revokeFrame, type RevokeReason, type TaskView } from './queue-types.js';
import { stateOf, taskView } from './queue-views.js';
import { failAttempt } from './attempt-failure.js';
import { unavailable } from './store-guard.js';
import { GATEWAY_SOURCE } from './task-outcome.js';
import { TaskStateError } from './task-state-error.js';

/** Tells a holder its lease is gone: its later ack, fail or progress of the task get UNKNOWN_TASK. */
export function revoke(ctx: QueueContext, lease: Lease<TaskJob>, reason: RevokeReason): boolean {
  if (!ctx.leases.remove(lease)) return false;
  if (!lease.consumer.closing) lease.consumer.send(revokeFrame(lease, reason));
  return true;
}

/**
 * Arms the attempt's timeout (`opts.timeout`, or the queue's): held
 * longer, the lease is revoked and the attempt fails with reason `timeout`
 * (retried while attempts remain).
 */
export function armTimeout(ctx: QueueContext, lease: Lease<TaskJob>): void {
  const timeout = timeoutOf(lease.job);
  if (timeout === undefined) return;
  lease.timer = setTimeout(() => {
    if (!revoke(ctx, lease, 'timeout')) return;
    const fail = () => failAttempt(ctx, lease.job, lease.token, lease.queue, 'timeout', {});
    ctx.track(ctx.withToken(lease.token, fail).catch((err: unknown) => {
      if (isLostLease(err)) return;
      ctx.log.error({ err, queue: lease.queue, taskId: lease.taskId }, 'queues: could not fail a timed-out task; it returns when its lease expires');
    }));
  }, timeout);
  lease.timer.unref();
}

/** Watching and taking back tasks: the holder's progress, and cancel by a requester or an admin. */
export class TaskControl {
  constructor(private readonly ctx: QueueContext, private readonly cancelled: CancelledTasks) {}

  /** The holder's progress: stored with the task, published as `queue.progress` and `REPLYTO.progress`. */
  async progress(consumer: TaskConsumer, taskId: string, progress: unknown): Promise<void> {
    const lease = this.ctx.leases.find(consumer.id, taskId);
    if (!lease) throw new BusError('UNKNOWN_TASK', `task ${taskId} is not held by this connection`);
    try {
      await lease.job.updateProgress((progress ?? null) as JobProgress);
    } catch (err) {
      if (err instanceof RangeError) throw new BusError('INVALID_FRAME', `the progress cannot be stored as JSON: ${err.message}`);
      this.ctx.log.warn({ err, queue: lease.queue, taskId }, 'queues: storing progress failed');
      throw unavailable();
    }
    this.ctx.options.onOutcome({
      kind: 'progress', queue: lease.queue, taskId, attempts: lease.job.attemptsStarted,
      progress: progress ?? null, replyTo: replyToOf(lease.job), traceparent: traceparentOf(lease.job), source: consumer.label,
    });
  }

  /**
   * Cancels a waiting, delayed or active task: it leaves its queue (never
   * retried), an active one's holder gets `revoke`, its view stays as
   * `cancelled`, `queue.cancelled` and `{"error":"cancelled"}` on its
   * replyTo are published. A finished task: TaskStateError (409); none: UNKNOWN_TASK.
   */
  async cancel(name: string, taskId: string, reason = 'cancelled'): Promise<TaskView> {
    const { store } = this.ctx;
    const runtime = await this.ctx.knownRuntime(name);
    const job = runtime && await store.run(() => runtime.queue.getJob(taskId)) as TaskJob | undefined;
    if (!runtime || !job) {
      if (await store.run(() => this.cancelled.find(name, taskId))) throw new TaskStateError('cancelled', `task ${taskId} is already cancelled`);
      throw new BusError('UNKNOWN_TASK', `no task ${taskId} in queue ${name}`);
    }
    const state = stateOf(await store.run(() => job.getState()));
    if (state === 'completed' || state === 'failed') {
      throw new TaskStateError(state, `task ${taskId} is ${state}: only waiting, delayed or active tasks can be cancelled`);
    }
    const view: TaskView = {
      ...taskView(job, 'cancelled', null), finishedAt: new Date().toISOString(),
      reasons: [...(job.stacktrace ?? []), reason], failedReason: reason,
    };
    await store.run(() => this.cancelled.save(view));
    try {
      await this.takeOut(runtime.queue, job, taskId);
    } catch (err) {
      await this.cancelled.delete(name, taskId).catch(() => false);
      throw err;
    }
    this.ctx.options.onOutcome({
      kind: 'cancelled', queue: name, taskId, attempts: job.attemptsStarted, reason, replyTo: replyToOf(job), traceparent: traceparentOf(job), source: GATEWAY_SOURCE,
      ...streamFlagOf(job),
    });
    return view;
  }

  /** Removes the task from its BullMQ queue; an active one held here is revoked and ended first. */
  private async takeOut(queue: TaskQueue, job: TaskJob, taskId: string): Promise<void> {
    const { store } = this.ctx;
    if (await store.run(() => queue.remove(taskId)) === 1) return;
    const lease = this.ctx.leases.holderOf(job.queueName, taskId);
    if (!lease) {
      throw new TaskStateError('active', `task ${taskId} is held by another gateway or a BullMQ worker: it cannot be cancelled here`);
    }
    revoke(this.ctx, lease, 'cancelled');
    await this.ctx.withToken(lease.token, () => lease.job.moveToFailed(attemptFailure('cancelled', true), lease.token, false)).catch((err: unknown) => {
      if (!isLostLease(err)) throw err;
    });
    await store.run(() => queue.remove(taskId));
  }
}
