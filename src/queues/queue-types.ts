/** What the queue organ shows: the task frame workers get and the REST views. */

/** The task as a worker receives it in `{"task": …}`. */
export interface TaskFrame {
  id: string;
  queue: string;
  payload: unknown;
  createdAt: string;
  attempts: number;
}

export type TaskState = 'waiting' | 'active' | 'delayed' | 'completed' | 'failed';
export const TASK_STATES: readonly TaskState[] = ['waiting', 'active', 'delayed', 'completed', 'failed'];

export interface TaskView extends TaskFrame {
  state: TaskState | 'unknown';
  maxAttempts: number;
  priority: number;
  replyTo: string | null;
  finishedAt: string | null;
  result: unknown;
  /** The reason of each failed attempt, oldest first; the last one is `failedReason`. */
  reasons: string[];
  failedReason: string | null;
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
}

export interface QueueDetail extends QueueSummary {
  tasks: Record<TaskState, TaskView[]>;
}
