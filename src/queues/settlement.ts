import { BusError } from '../bus/protocol.js';
import { failAttempt } from './attempt-failure.js';
import { isLostLease, nextJobOf, replyToOf, streamFlagOf, traceparentOf, type JobHost, type TaskJob } from './bullmq-adapter.js';
import { CompletionBatch } from './completion-batch.js';
import type { TaskConsumer } from './credit-ledger.js';
import type { Delivery } from './delivery.js';
import type { Lease } from './lease-table.js';
import type { QueueContext } from './queue-context.js';
import { revokeFrame, type RevokeReason } from './queue-types.js';
import { unavailable } from './store-guard.js';

/**
 * How a held task ends: `ack` (completed), `fail` (a failed attempt), or
 * its connection going away (every task it held back at once). A command
 * whose reply a Redis restart lost is judged by the task's state after.
 */
export class Settlement {
  /** Each queue's acks of a tick, completed together (by the host its jobs were fetched through). */
  private readonly completions = new WeakMap<JobHost, CompletionBatch>();

  constructor(private readonly ctx: QueueContext, private readonly delivery: Delivery) {}

  async ack(consumer: TaskConsumer, taskId: string, result: unknown): Promise<void> {
    const lease = this.takeLease(consumer, taskId);
    const runtime = this.ctx.runtime(lease.queue);
    await this.settle(lease, async () => {
      // While pulls wait, the completion also fetches the next task, under the
      // same lock token, as BullMQ's own Worker does: one Redis command a task
      // instead of two. It counts as a fetch in flight meanwhile.
      const fetchNext = await this.delivery.completionFetches(runtime);
      let next: TaskJob | undefined;
      try {
        const host = runtime.fetcher?.host;
        const completion = { job: lease.job, result: result ?? null, token: lease.token, fetchNext };
        const reply = host ? await this.completionsOf(host).complete(completion) : await lease.job.moveToCompleted(completion.result, lease.token, fetchNext);
        next = host ? nextJobOf(host, reply, lease.token) : undefined;
      } catch (err) {
        // The command may have run with its reply lost to a Redis restart
        // (then a resent one finds no lock): if the task is done, so is the ack.
        // A task that lost reply fetched is an orphan recovery returns.
        if (!(await lease.job.isCompleted().catch(() => false))) throw err;
      } finally {
        if (fetchNext) {
          runtime.fetching--;
          this.delivery.fetched(runtime, next, lease.token);
        }
      }
      this.ctx.options.onOutcome({
        kind: 'completed', queue: lease.queue, taskId, attempts: lease.job.attemptsStarted,
        result: result ?? null, replyTo: replyToOf(lease.job), traceparent: traceparentOf(lease.job), source: consumer.label, runMs: Date.now() - lease.deliveredAt,
        ...streamFlagOf(lease.job),
      });
    });
  }

  async fail(consumer: TaskConsumer, taskId: string, reason: string): Promise<void> {
    const lease = this.takeLease(consumer, taskId);
    await this.settle(lease, async () => {
      try {
        await failAttempt(this.ctx, lease.job, lease.token, lease.queue, reason, { source: consumer.label, runMs: Date.now() - lease.deliveredAt });
      } catch (err) {
        // As for ack: a resent command finds the task no longer active when
        // the first one ran; either way it is out of this worker's hands.
        if ((await lease.job.getState().catch(() => 'active')) === 'active') throw err;
      }
    });
  }

  /**
   * A connection went away: its credits end and its tasks go back to their
   * queues at once, each as a failed attempt (`worker disconnected`).
   */
  release(consumerId: string, reason = 'worker disconnected', revoked?: RevokeReason): void {
    this.ctx.ledger.drop(consumerId);
    for (const lease of this.ctx.leases.takeAll(consumerId)) {
      if (revoked && !lease.consumer.closing) lease.consumer.send(revokeFrame(lease, revoked));
      const giveBack = () => failAttempt(this.ctx, lease.job, lease.token, lease.queue, reason, { immediate: true });
      this.ctx.track(this.ctx.withToken(lease.token, giveBack).catch((err: unknown) => {
        if (isLostLease(err)) return;
        this.ctx.log.error({ err, queue: lease.queue, taskId: lease.taskId }, 'queues: could not return a task; it returns when its lease expires');
      }));
    }
  }

  private completionsOf(host: JobHost): CompletionBatch {
    let batch = this.completions.get(host);
    if (!batch) {
      batch = new CompletionBatch(host);
      this.completions.set(host, batch);
    }
    return batch;
  }

  private takeLease(consumer: TaskConsumer, taskId: string): Lease<TaskJob> {
    const lease = this.ctx.leases.take(consumer.id, taskId);
    if (!lease) throw new BusError('UNKNOWN_TASK', `task ${taskId} is not held by this connection`);
    return lease;
  }

  /** Runs an ack or fail; a lost lease is UNKNOWN_TASK, a Redis error UNAVAILABLE (the lease stays). */
  private async settle(lease: Lease<TaskJob>, action: () => Promise<void>): Promise<void> {
    const run = this.ctx.withToken(lease.token, action);
    this.ctx.track(run.catch(() => undefined));
    try {
      await run;
    } catch (err) {
      if (isLostLease(err)) {
        throw new BusError('UNKNOWN_TASK', `the lease on task ${lease.taskId} expired and it went back to its queue`);
      }
      // A result JSON cannot hold (nested too deeply): the worker's fault; nothing changed, the lease stays.
      if (err instanceof RangeError) {
        this.ctx.leases.add(lease);
        throw new BusError('INVALID_FRAME', `the result cannot be stored as JSON: ${err.message}`);
      }
      this.ctx.log.error({ err, queue: lease.queue, taskId: lease.taskId }, 'queues: ack/fail failed');
      if (lease.consumer.closing || this.ctx.closing) this.release(lease.consumer.id);
      else this.ctx.leases.add(lease);
      throw unavailable();
    }
  }
}
