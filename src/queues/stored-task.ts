import type { Job, JobsOptions } from 'bullmq';
import { isValidTopic } from '../bus/topic.js';
import { isTraceparent } from '../trace/trace-context.js';
import type { TaskFrame } from './queue-types.js';

/**
 * What the gateway stores in a job beyond BullMQ's own options, and reads
 * back once: a fetched task is read here into what its delivery, its lease
 * and every outcome of it need, so nothing later reads the job's options
 * again. Only public `Job` fields are read (the adapter owns the internals).
 */

type StoredJob = Job<unknown, unknown, string>;

/** Job options this gateway adds beyond BullMQ's (BullMQ stores unknown options as given). */
export type StoredOptions = JobsOptions & { replyTo?: string; timeout?: number; traceparent?: string; stream?: true };

/** What every outcome of a task says of it besides its end, and how many attempts it gets. */
export interface TaskFacts {
  maxAttempts: number;
  /** The topic the requester waits on (`opts.replyTo`), when valid. */
  replyTo: string | undefined;
  traceparent: string | undefined;
  /** v3: enqueued with `opts.stream`. */
  stream: true | undefined;
}

/**
 * How many attempts a job gets, as BullMQ itself counts them: BullMQ stores
 * `attempts: 0` (or none) for a job added without the option and runs it
 * once; a fractional count retries while `attemptsMade + 1 < attempts`.
 */
export function maxAttemptsOf(opts: { attempts?: unknown }): number {
  const attempts = opts.attempts;
  return typeof attempts === 'number' && Number.isFinite(attempts) && attempts >= 1 ? Math.ceil(attempts) : 1;
}

/** Node's timers take at most this many ms; a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function isTimeout(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 && value <= MAX_TIMER_MS;
}

export function replyToOf(job: StoredJob): string | undefined {
  const replyTo = (job.opts as StoredOptions).replyTo;
  return isValidTopic(replyTo) ? replyTo as string : undefined;
}

/** Whether the task was enqueued with `opts.stream` (v3): its holder may stream output to followers. */
export function streamedOf(job: StoredJob): boolean {
  return (job.opts as StoredOptions).stream === true;
}

/** `{stream: true}` for a view of a streamed task, else nothing. */
export function streamFlagOf(job: StoredJob): { stream?: true } {
  return streamedOf(job) ? { stream: true } : {};
}

/** The facts of a job as stored; a traceparent a foreign producer spelled wrong is ignored (tracing never stops a task). */
export function factsOf(job: StoredJob): TaskFacts {
  const { traceparent } = job.opts as StoredOptions;
  return {
    maxAttempts: maxAttemptsOf(job.opts),
    replyTo: replyToOf(job),
    traceparent: isTraceparent(traceparent) ? traceparent : undefined,
    stream: streamedOf(job) ? true : undefined,
  };
}

/** Jobs whose `data` JSON.parse refused, with the parser's message: delivery sets them aside. */
const unreadableData = new WeakMap<StoredJob, string>();

/** The adapter read `job` with `data: null` in place of data that is not JSON. */
export function markUnreadable(job: StoredJob, message: string): void {
  unreadableData.set(job, message);
}

/**
 * Why a fetched job cannot be delivered, or null: data that is not JSON,
 * a hash gone or without a timestamp, or options this gateway cannot
 * honour. Such a job is failed with the reason, never handed to a worker.
 */
export function deliveryFlaw(job: StoredJob, facts: TaskFacts = factsOf(job)): string | null {
  const unreadable = unreadableData.get(job);
  if (unreadable !== undefined) return `undeliverable: its data is not JSON (${unreadable})`;
  if (!Number.isFinite(job.timestamp)) return 'undeliverable: its hash is gone or has no readable timestamp';
  const opts = job.opts as StoredOptions;
  if (opts.timeout !== undefined && !isTimeout(opts.timeout)) {
    return `undeliverable: opts.timeout ${JSON.stringify(opts.timeout)} cannot be honoured (a whole number of ms from 1 to ${MAX_TIMER_MS})`;
  }
  // facts.replyTo is the stored one only when it is a valid topic.
  if (opts.replyTo !== undefined && facts.replyTo === undefined) return 'undeliverable: opts.replyTo is not a valid topic';
  return null;
}

/** A fetched job and the lock token it is held active with. */
interface Held {
  job: StoredJob;
  token: string;
  facts: TaskFacts;
}

/**
 * A fetched job read once: one that cannot go out (its flaw), one whose
 * attempts were all spent without an ack or fail (the gateway stopped each
 * time a worker had it), or the task frame with what its lease needs.
 */
export type FetchedTask =
  | Held & { kind: 'undeliverable'; reason: string }
  | Held & { kind: 'spent'; reason: string; attempts: number }
  | Held & { kind: 'deliverable'; task: TaskFrame; timeoutMs: number | undefined; waitMs: number };

export function fetchedTaskOf(job: StoredJob, token: string, queue: string, now: number): FetchedTask {
  const facts = factsOf(job);
  const flaw = deliveryFlaw(job, facts);
  if (flaw !== null) return { kind: 'undeliverable', job, token, facts, reason: flaw };
  const { maxAttempts } = facts;
  if (job.deferredFailure || job.attemptsStarted > maxAttempts) {
    const reason = `no ack or fail after ${maxAttempts} ${maxAttempts === 1 ? 'delivery' : 'deliveries'}: attempts spent`;
    return { kind: 'spent', job, token, facts, reason, attempts: job.attemptsStarted - 1 };
  }
  const task: TaskFrame = {
    id: job.id as string,
    queue,
    payload: job.data === undefined ? null : job.data,
    createdAt: new Date(job.timestamp).toISOString(),
    attempts: job.attemptsStarted,
  };
  if (facts.traceparent !== undefined) task.traceparent = facts.traceparent;
  if (facts.stream) task.stream = true;
  const opts = job.opts as StoredOptions;
  const delayMs = typeof opts.delay === 'number' && Number.isFinite(opts.delay) ? opts.delay : 0;
  const timeoutMs = isTimeout(opts.timeout) ? opts.timeout : undefined;
  return { kind: 'deliverable', job, token, facts, task, timeoutMs, waitMs: now - job.timestamp - delayMs };
}
