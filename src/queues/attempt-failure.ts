import { attemptFailure, dropBackoff, maxAttemptsOf, replyToOf, streamFlagOf, traceparentOf, type TaskJob } from './bullmq-adapter.js';
import { GATEWAY_SOURCE, type TaskOutcome } from './task-outcome.js';

/**
 * Ends one attempt as failed: retried with backoff (at once when its
 * worker disconnected) until its attempts are spent, then dead.
 */
export async function failAttempt(onOutcome: (outcome: TaskOutcome) => void, job: TaskJob, token: string, queue: string, reason: string, how: {
  /** Retry without backoff (its worker disconnected; the task did not fail). */
  immediate?: boolean;
  /** Dead whatever attempts are left. */
  final?: boolean;
  attempts?: number;
  source?: string;
  /** From delivery to this end, when a worker held the task. */
  runMs?: number;
}): Promise<void> {
  const dead = how.final === true || job.attemptsMade + 1 >= maxAttemptsOf(job.opts);
  if (how.immediate) dropBackoff(job);
  await job.moveToFailed(attemptFailure(reason, how.final), token, false);
  onOutcome({
    kind: dead ? 'dead' : 'failed', queue, taskId: job.id as string, attempts: how.attempts ?? job.attemptsStarted,
    reason, replyTo: replyToOf(job), traceparent: traceparentOf(job), source: how.source ?? GATEWAY_SOURCE, runMs: how.runMs,
    ...streamFlagOf(job),
  });
}
