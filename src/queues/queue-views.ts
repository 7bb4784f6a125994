import type { JobType } from 'bullmq';
import { BusError } from '../bus/protocol.js';
import type { TaskJob } from './bullmq-adapter.js';
import type { LiveQueue } from './live-queue.js';
import type { LiveQueues } from './live-queues.js';
import {
  TASK_STATES, type PullerView, type QueueCounts, type QueueDetail, type QueueSummary, type TaskState, type TaskView,
  type TaskViewState,
} from './queue-types.js';
import type { CancelledTasks } from './cancelled-tasks.js';
import type { StoreGuard } from './store-guard.js';
import { maxAttemptsOf, replyToOf, streamFlagOf } from './stored-task.js';

export function stateOf(state: string): TaskState | 'unknown' {
  if (state === 'wait' || state === 'waiting' || state === 'prioritized' || state === 'paused') return 'waiting';
  return (TASK_STATES as readonly string[]).includes(state) ? state as TaskState : 'unknown';
}

export function taskView(job: TaskJob, state: TaskViewState, holder: string | null): TaskView {
  return {
    id: job.id as string,
    queue: job.queueName,
    payload: job.data === undefined ? null : job.data,
    createdAt: new Date(job.timestamp).toISOString(),
    attempts: job.attemptsStarted,
    state,
    maxAttempts: maxAttemptsOf(job.opts),
    priority: job.priority ?? 0,
    replyTo: replyToOf(job) ?? null,
    finishedAt: job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
    result: job.returnvalue ?? null,
    reasons: job.stacktrace ?? [],
    failedReason: job.failedReason ?? null,
    progress: job.progress === undefined || job.progress === 0 ? null : job.progress,
    holder,
    ...streamFlagOf(job),
  };
}

/** The REST views: queues with their counts and pullers, a queue's tasks by state, one task. */
export class QueueViews {
  constructor(private readonly queues: LiveQueues, private readonly store: StoreGuard, private readonly cancelled: CancelledTasks) {}

  /** The queues known, those `visible` says the caller may see. */
  async listQueues(visible: (name: string) => boolean = () => true): Promise<QueueSummary[]> {
    const names = (await this.store.run(() => this.queues.names())).filter(visible);
    return Promise.all(names.map((name) => this.summary(name)));
  }

  async describeQueue(name: string, page: { offset: number; limit: number }): Promise<QueueDetail> {
    const tasks = {} as Record<TaskState, TaskView[]>;
    for (const state of TASK_STATES) tasks[state] = [];
    const live = await this.queues.known(name);
    if (!live) {
      const counts = Object.fromEntries(TASK_STATES.map((state) => [state, 0])) as QueueCounts;
      return { name, counts, paused: false, pullers: [], tasks };
    }
    const summary = await this.summary(name);
    await this.store.run(() => Promise.all(TASK_STATES.map(async (state) => {
      const types: JobType[] = state === 'waiting' ? ['wait', 'prioritized'] : [state];
      const jobs = await live.queue.getJobs(types, page.offset, page.offset + page.limit - 1, true);
      tasks[state] = jobs.slice(0, page.limit).map((job) => taskView(job as TaskJob, state, holderOf(live, job.id as string)));
    })));
    return { ...summary, tasks };
  }

  async getTask(name: string, taskId: string): Promise<TaskView> {
    const live = await this.queues.known(name);
    const job = live && await this.store.run(() => live.queue.getJob(taskId));
    if (!job) {
      const cancelled = live && await this.store.run(() => this.cancelled.find(name, taskId));
      if (cancelled) return cancelled;
      throw new BusError('UNKNOWN_TASK', `no task ${taskId} in queue ${name}`);
    }
    const state = stateOf(await this.store.run(() => job.getState()));
    return taskView(job as TaskJob, state, state === 'active' ? holderOf(live, taskId) : null);
  }

  private async summary(name: string): Promise<QueueSummary> {
    const live = this.queues.open(name);
    const [raw, paused] = await this.store.run(() => Promise.all([
      live.queue.getJobCounts('wait', 'prioritized', 'active', 'delayed', 'completed', 'failed'),
      live.queue.isPaused(),
    ]));
    const counts: QueueCounts = {
      waiting: (raw.wait ?? 0) + (raw.prioritized ?? 0),
      active: raw.active ?? 0,
      delayed: raw.delayed ?? 0,
      completed: raw.completed ?? 0,
      failed: raw.failed ?? 0,
    };
    return { name, counts, paused, pullers: pullersOf(live) };
  }
}

function holderOf(live: LiveQueue, taskId: string): string | null {
  return live.holderOf(taskId)?.consumer.label ?? null;
}

function pullersOf(live: LiveQueue): PullerView[] {
  const views = new Map<string, PullerView>();
  for (const { consumer, credits } of live.pulls.pullers()) {
    views.set(consumer.id, { clientId: consumer.id, name: consumer.label, credits, leased: 0 });
  }
  for (const lease of live.heldLeases()) {
    const view = views.get(lease.consumer.id)
      ?? { clientId: lease.consumer.id, name: lease.consumer.label, credits: 0, leased: 0 };
    view.leased++;
    views.set(lease.consumer.id, view);
  }
  return [...views.values()];
}
