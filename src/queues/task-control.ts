import type { JobProgress } from 'bullmq';
import { BusError } from '../bus/protocol.js';
import { attemptFailure, isLostLease, type TaskJob } from './bullmq-adapter.js';
import type { CancelledTasks } from './cancelled-tasks.js';
import type { TaskConsumer } from './credit-ledger.js';
import type { LeaseTable } from './lease-table.js';
import type { LiveQueue } from './live-queue.js';
import type { QueueLogger } from './queue-logger.js';
import type { TaskView } from './queue-types.js';
import { stateOf, taskView } from './queue-views.js';
import { unavailable, type StoreGuard } from './store-guard.js';
import { factsOf } from './stored-task.js';
import { GATEWAY_SOURCE, type TaskOutcome } from './task-outcome.js';
import { TaskStateError } from './task-state-error.js';
import type { WorkInFlight } from './work-in-flight.js';

export interface TaskControlOptions {
  holders: LeaseTable<TaskJob>;
  /** The live queue of a queue that exists; null otherwise. */
  knownQueue(name: string): Promise<LiveQueue | null>;
  store: StoreGuard;
  work: WorkInFlight;
  log: QueueLogger;
  cancelled: CancelledTasks;
  onOutcome(outcome: TaskOutcome): void;
}

/** The outcome of a task taken out of its queue before it ended: `queue.cancelled`, its replyTo told, its stream ended. */
export function cancelledOutcome(queue: string, job: TaskJob, reason: string): TaskOutcome {
  const { replyTo, traceparent, stream } = factsOf(job);
  return { kind: 'cancelled', queue, taskId: job.id as string, attempts: job.attemptsStarted, reason, replyTo, traceparent, stream, source: GATEWAY_SOURCE };
}

/** Watching and taking back tasks: the holder's progress, and cancel by a requester or an admin. */
export class TaskControl {
  constructor(private readonly options: TaskControlOptions) {}

  /** The holder's progress: stored with the task, published as `queue.progress` and `REPLYTO.progress`. */
  async progress(consumer: TaskConsumer, taskId: string, progress: unknown): Promise<void> {
    const lease = this.options.holders.find(consumer.id, taskId);
    if (!lease) throw new BusError('UNKNOWN_TASK', `task ${taskId} is not held by this connection`);
    try {
      await lease.job.updateProgress((progress ?? null) as JobProgress);
    } catch (err) {
      if (err instanceof RangeError) throw new BusError('INVALID_FRAME', `the progress cannot be stored as JSON: ${err.message}`);
      this.options.log.warn({ err, queue: lease.queue, taskId }, 'queues: storing progress failed');
      throw unavailable();
    }
    this.options.onOutcome({
      kind: 'progress', queue: lease.queue, taskId, attempts: lease.job.attemptsStarted,
      progress: progress ?? null, replyTo: lease.facts.replyTo, traceparent: lease.facts.traceparent, source: consumer.label,
    });
  }

  /**
   * Cancels a waiting, delayed or active task: it leaves its queue (never
   * retried), an active one's holder gets `revoke`, its view stays as
   * `cancelled`, `queue.cancelled` and `{"error":"cancelled"}` on its
   * replyTo are published. A finished task: TaskStateError (409); none: UNKNOWN_TASK.
   */
  async cancel(name: string, taskId: string, reason = 'cancelled'): Promise<TaskView> {
    const { store, cancelled } = this.options;
    const live = await this.options.knownQueue(name);
    const job = live && await store.run(() => live.queue.getJob(taskId)) as TaskJob | undefined;
    if (!live || !job) {
      if (await store.run(() => cancelled.find(name, taskId))) throw new TaskStateError('cancelled', `task ${taskId} is already cancelled`);
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
    await store.run(() => cancelled.save(view));
    try {
      await this.takeOut(live, taskId);
    } catch (err) {
      await cancelled.delete(name, taskId).catch(() => false);
      throw err;
    }
    this.options.onOutcome(cancelledOutcome(name, job, reason));
    return view;
  }

  /** Removes the task from its BullMQ queue; an active one held here is revoked and ended first. */
  private async takeOut(live: LiveQueue, taskId: string): Promise<void> {
    const { store, work } = this.options;
    const { queue } = live;
    if (await store.run(() => queue.remove(taskId)) === 1) return;
    const lease = live.holderOf(taskId);
    if (!lease) {
      throw new TaskStateError('active', `task ${taskId} is held by another gateway or a BullMQ worker: it cannot be cancelled here`);
    }
    live.revoke(lease, 'cancelled');
    await work.withToken(lease.token, () => lease.job.moveToFailed(attemptFailure('cancelled', true), lease.token, false)).catch((err: unknown) => {
      if (!isLostLease(err)) throw err;
    });
    await store.run(() => queue.remove(taskId));
  }
}
