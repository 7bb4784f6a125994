/** What the queue organ shows: the task frame workers get and the REST views. */
import type { RecentQuantiles } from '../metrics/recent-durations.js';

/** The task as a worker receives it in `{"task": …}`. */
export interface TaskFrame {
  id: string;
  queue: string;
  payload: unknown;
  createdAt: string;
  attempts: number;
  /** The enqueue's `opts.traceparent`, when it had one. */
  traceparent?: string;
  /** v3: enqueued with `opts.stream`: the holder may send `chunk`s of its output. */
  stream?: true;
}

export type TaskState = 'waiting' | 'active' | 'delayed' | 'completed' | 'failed';
export const TASK_STATES: readonly TaskState[] = ['waiting', 'active', 'delayed', 'completed', 'failed'];

/** A task's state in views: BullMQ's, and `cancelled` (kept by the gateway, cancelled-tasks.ts). */
export type TaskViewState = TaskState | 'cancelled' | 'unknown';

export interface TaskView extends TaskFrame {
  state: TaskViewState;
  maxAttempts: number;
  priority: number;
  replyTo: string | null;
  finishedAt: string | null;
  result: unknown;
  /** The reason of each failed attempt, oldest first; the last one is `failedReason`. */
  reasons: string[];
  failedReason: string | null;
  /** The holder's last `progress` (null: none). */
  progress: unknown;
  /** The name of the connection holding it, while active and held through this gateway. */
  holder: string | null;
}

export type QueueCounts = Record<TaskState, number>;

export interface PullerView {
  clientId: string;
  name: string;
  credits: number;
  leased: number;
}

export interface QueueSummary {
  name: string;
  counts: QueueCounts;
  paused: boolean;
  pullers: PullerView[];
  /** Wait and run times over the last minutes, on this gateway (added by `GET /queues` from the metrics). */
  times?: { wait: RecentQuantiles; run: RecentQuantiles };
}

export interface QueueDetail extends QueueSummary {
  tasks: Record<TaskState, TaskView[]>;
}

export type RevokeReason = 'cancelled' | 'timeout' | 'heartbeat lapsed';

/** What a holder is sent when its lease on a task is taken back: it must stop and never ack it. */
export function revokeFrame(task: { taskId: string; queue: string }, reason: RevokeReason): { revoke: { taskId: string; queue: string; reason: RevokeReason } } {
  return { revoke: { taskId: task.taskId, queue: task.queue, reason } };
}
