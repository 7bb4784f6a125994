import { BusError } from '../bus/protocol.js';
import type { TaskJob } from './bullmq-adapter.js';
import type { CancelledTasks } from './cancelled-tasks.js';
import type { QueueContext } from './queue-context.js';
import type { TaskState } from './queue-types.js';
import { stateOf } from './queue-views.js';
import { TaskStateError } from './task-state-error.js';

/** The admin's levers over REST: retry, remove, pause, resume. */
export class QueueAdmin {
  constructor(private readonly ctx: QueueContext, private readonly cancelled: CancelledTasks) {}

  /**
   * Sends a dead (failed) or completed task through again with a fresh
   * set of attempts; a delayed task (waiting out its backoff) runs now.
   */
  async retry(name: string, taskId: string): Promise<TaskState> {
    const { store } = this.ctx;
    const runtime = await this.ctx.knownRuntime(name);
    const job = runtime && await store.run(() => runtime.queue.getJob(taskId)) as TaskJob | undefined;
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

  async remove(name: string, taskId: string): Promise<void> {
    const runtime = await this.ctx.knownRuntime(name);
    const job = runtime && await this.ctx.store.run(() => runtime.queue.getJob(taskId));
    if (runtime && !job && await this.ctx.store.run(() => this.cancelled.delete(name, taskId))) return;
    if (!runtime || !job) throw new BusError('UNKNOWN_TASK', `no task ${taskId} in queue ${name}`);
    const removed = await this.ctx.store.run(() => runtime.queue.remove(taskId));
    if (!removed) throw new TaskStateError('active', `task ${taskId} is being worked on: ack, fail or disconnect first`);
  }

  async pause(name: string): Promise<void> {
    const runtime = this.ctx.runtime(name);
    await this.ctx.store.run(() => runtime.queue.pause());
  }

  async resume(name: string): Promise<void> {
    const runtime = this.ctx.runtime(name);
    await this.ctx.store.run(() => runtime.queue.resume());
  }
}
