import { BusError } from '../bus/protocol.js';
import type { TaskJob } from './bullmq-adapter.js';
import type { CancelledTasks } from './cancelled-tasks.js';
import type { LiveQueues } from './live-queues.js';
import type { TaskState } from './queue-types.js';
import { stateOf } from './queue-views.js';
import type { StoreGuard } from './store-guard.js';
import { cancelledOutcome } from './task-control.js';
import type { TaskOutcome } from './task-outcome.js';
import { TaskStateError } from './task-state-error.js';

/** The admin's levers over REST: retry, remove, pause, resume. */
export class QueueAdmin {
  constructor(
    private readonly queues: LiveQueues,
    private readonly store: StoreGuard,
    private readonly cancelled: CancelledTasks,
    private readonly onOutcome: (outcome: TaskOutcome) => void,
  ) {}

  /**
   * Sends a dead (failed) or completed task through again with a fresh
   * set of attempts; a delayed task (waiting out its backoff) runs now.
   */
  async retry(name: string, taskId: string): Promise<TaskState> {
    const { store } = this;
    const live = await this.queues.known(name);
    const job = live && await store.run(() => live.queue.getJob(taskId)) as TaskJob | undefined;
    if (!job) throw new BusError('UNKNOWN_TASK', `no task ${taskId} in queue ${name}`);
    const state = stateOf(await store.run(() => job.getState()));
    if (state === 'failed' || state === 'completed') {
      await store.run(() => job.retry(state, { resetAttemptsMade: true, resetAttemptsStarted: true }));
    } else if (state === 'delayed') {
      await store.run(() => job.promote());
    } else {
      throw new TaskStateError(state, `task ${taskId} is ${state}: only failed, completed or delayed tasks can be retried`);
    }
    return state;
  }

  /**
   * Removes a task that is not being worked on. One that had not ended
   * (waiting, delayed) ends as cancelled with reason `removed`, so its
   * requester and its stream's followers are not left waiting.
   */
  async remove(name: string, taskId: string): Promise<void> {
    const live = await this.queues.known(name);
    const job = live && await this.store.run(() => live.queue.getJob(taskId)) as TaskJob | undefined;
    if (live && !job && await this.store.run(() => this.cancelled.delete(name, taskId))) return;
    if (!live || !job) throw new BusError('UNKNOWN_TASK', `no task ${taskId} in queue ${name}`);
    const state = stateOf(await this.store.run(() => job.getState()));
    const removed = await this.store.run(() => live.queue.remove(taskId));
    if (!removed) throw new TaskStateError('active', `task ${taskId} is being worked on: ack, fail or disconnect first`);
    if (state !== 'completed' && state !== 'failed') this.onOutcome(cancelledOutcome(name, job, 'removed'));
  }

  async pause(name: string): Promise<void> {
    const { queue } = this.queues.open(name);
    await this.store.run(() => queue.pause());
  }

  async resume(name: string): Promise<void> {
    const { queue } = this.queues.open(name);
    await this.store.run(() => queue.resume());
  }
}
