import type { BusEvent } from '../bus/protocol.js';
import { isValidTopic } from '../bus/topic.js';

/** What happened to a task, for the bus: followers and the task's requester. */
export interface TaskOutcome {
  kind: 'completed' | 'failed' | 'dead' | 'cancelled' | 'progress';
  queue: string;
  taskId: string;
  /** Deliveries so far, the one that ended here included. */
  attempts: number;
  reason?: string;
  /** The worker's result (`ack`'s `result`), for `completed`. */
  result?: unknown;
  /** The holder's last `progress`, for `progress`. */
  progress?: unknown;
  /** The topic the requester waits on (`opts.replyTo` of the enqueue). */
  replyTo?: string;
  /** Who ended the attempt: the worker's label, or the gateway. */
  source: string;
  /** From delivery to this end, when a worker held the task. */
  runMs?: number;
  /** The task's `opts.traceparent`: carried by every event of the outcome. */
  traceparent?: string;
  /** The task was enqueued with `opts.stream`: its end closes its stream (src/task-streams). */
  stream?: true;
}

export const GATEWAY_SOURCE = 'brainstem';

/**
 * The bus events of an outcome: `queue.completed`, `queue.failed` (every
 * failed attempt) and `queue.dead` (`{queue, taskId, attempts, reason?,
 * stream?}`: `stream: true` for a streamed task, so a page that never saw
 * it active can still follow its kept stream), and the reply on `replyTo`
 * (correlationId = taskId) when the task is done for good: its result, or
 * `{error}` when it is dead.
 */
export function outcomeEvents(outcome: TaskOutcome, now = Date.now()): BusEvent[] {
  const events = eventsOf(outcome, new Date(now).toISOString());
  if (outcome.traceparent !== undefined) for (const event of events) event.traceparent = outcome.traceparent;
  return events;
}

function eventsOf(outcome: TaskOutcome, timestamp: string): BusEvent[] {
  const { queue, taskId, attempts, reason } = outcome;
  if (outcome.kind === 'progress') return progressEvents(outcome, timestamp);
  if (outcome.kind === 'cancelled') return cancelledEvents(outcome, timestamp);
  const payload: Record<string, unknown> = reason === undefined ? { queue, taskId, attempts } : { queue, taskId, attempts, reason };
  if (outcome.stream) payload.stream = true;
  const events: BusEvent[] = [];
  if (outcome.kind === 'completed') {
    events.push({ type: 'queue.completed', source: GATEWAY_SOURCE, payload, timestamp });
  } else {
    events.push({ type: 'queue.failed', source: GATEWAY_SOURCE, payload, timestamp });
    if (outcome.kind === 'dead') events.push({ type: 'queue.dead', source: GATEWAY_SOURCE, payload, timestamp });
  }
  if (outcome.replyTo && outcome.kind !== 'failed') {
    events.push({
      type: outcome.replyTo,
      source: outcome.source,
      payload: outcome.kind === 'completed' ? (outcome.result ?? null) : { error: reason ?? 'failed' },
      timestamp,
      correlationId: taskId,
    });
  }
  return events;
}

/** `queue.progress` `{queue, taskId, progress}`, and `REPLYTO.progress` (payload: the progress) for a task with a replyTo. */
function progressEvents(outcome: TaskOutcome, timestamp: string): BusEvent[] {
  const { queue, taskId, progress = null, replyTo } = outcome;
  const events: BusEvent[] = [{ type: 'queue.progress', source: GATEWAY_SOURCE, payload: { queue, taskId, progress }, timestamp }];
  const topic = replyTo && `${replyTo}.progress`;
  if (topic && isValidTopic(topic)) events.push({ type: topic, source: outcome.source, payload: progress, timestamp, correlationId: taskId });
  return events;
}

/** `queue.cancelled` `{queue, taskId, reason, stream?}`, and `{"error":"cancelled"}` on its replyTo. */
function cancelledEvents(outcome: TaskOutcome, timestamp: string): BusEvent[] {
  const { queue, taskId, reason = 'cancelled', replyTo } = outcome;
  const payload: Record<string, unknown> = { queue, taskId, reason };
  if (outcome.stream) payload.stream = true;
  const events: BusEvent[] = [{ type: 'queue.cancelled', source: GATEWAY_SOURCE, payload, timestamp }];
  if (replyTo) events.push({ type: replyTo, source: outcome.source, payload: { error: 'cancelled' }, timestamp, correlationId: taskId });
  return events;
}
