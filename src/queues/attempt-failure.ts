import { attemptFailure, dropBackoff, type TaskJob } from './bullmq-adapter.js';
import type { TaskFacts } from './stored-task.js';
import { GATEWAY_SOURCE, type TaskOutcome } from './task-outcome.js';

/** A task held active under a lock token of this gateway, with what was read of it at its fetch. */
export interface HeldTask {
  job: TaskJob;
  token: string;
  facts: TaskFacts;
}

/**
 * Ends one attempt as failed: retried with backoff (at once when its
 * worker disconnected) until its attempts are spent, then dead.
 */
export async function failAttempt(onOutcome: (outcome: TaskOutcome) => void, queue: string, held: HeldTask, reason: string, how: {
  /** Retry without backoff (its worker disconnected; the task did not fail). */
  immediate?: boolean;
  /** Dead whatever attempts are left. */
  final?: boolean;
  attempts?: number;
  source?: string;
  /** From delivery to this end, when a worker held the task. */
  runMs?: number;
}): Promise<void> {
  const { job, token, facts } = held;
  const dead = how.final === true || job.attemptsMade + 1 >= facts.maxAttempts;
  if (how.immediate) dropBackoff(job);
  await job.moveToFailed(attemptFailure(reason, how.final), token, false);
  onOutcome({
    kind: dead ? 'dead' : 'failed', queue, taskId: job.id as string, attempts: how.attempts ?? job.attemptsStarted,
    reason, replyTo: facts.replyTo, traceparent: facts.traceparent, stream: facts.stream, source: how.source ?? GATEWAY_SOURCE, runMs: how.runMs,
  });
}
