import { BusError } from '../bus/protocol.js';
import { topicProblem } from '../bus/topic.js';
import { MAX_QUEUE_NAME_BYTES, MAX_TASK_ID_BYTES, nameProblem, quoted } from '../protocol/names.js';
import { isTraceparent } from '../trace/trace-context.js';
import { RESERVED_TASK_IDS } from './bullmq-adapter.js';

/** How long a failed task waits before its next delivery. */
export interface Backoff {
  type: 'exponential' | 'fixed';
  /** The first delay in ms; exponential doubles it on each further failure. */
  delay: number;
}

/** Retry policy of a queue or of one task. */
export interface RetryPolicy {
  attempts: number;
  backoff: Backoff;
}

/** A queue's settings from the QUEUE_OVERRIDES setting: retry policy and the default timeout of an attempt (ms). */
export type QueueOverride = Partial<RetryPolicy> & { timeout?: number };
export type QueueOverrides = Record<string, QueueOverride>;

/** The validated `opts` of an `enqueue` frame or of `POST /queues/:name/tasks`. */
export interface TaskOptions {
  priority?: number;
  delay?: number;
  attempts?: number;
  backoff?: Backoff;
  jobId?: string;
  replyTo?: string;
  /** An attempt held longer (ms) is revoked and fails with reason `timeout`. */
  timeout?: number;
  /** W3C trace context: kept with the task, on its task frame, its queue.* events and its reply. */
  traceparent?: string;
  /** v3: the holder may stream output of the task (`chunk`), kept for its followers. */
  stream?: true;
}

/** BullMQ's own limits: priorities up to 2^21-1, attempts we cap for sanity. */
export const MAX_PRIORITY = 2 ** 21 - 1;
export const MAX_ATTEMPTS = 1000;
const MAX_DELAY_MS = 365 * 24 * 3600 * 1000;
const OPTION_NAMES = new Set(['priority', 'delay', 'attempts', 'backoff', 'jobId', 'replyTo', 'timeout', 'traceparent', 'stream']);
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isWholeNumber(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

/** Why `name` is not a usable queue name, or null: a topic without wildcards, and no `:` (BullMQ's key separator). */
function queueNameProblem(name: string): string | null {
  return topicProblem(name, false, MAX_QUEUE_NAME_BYTES) ?? (name.includes(':') ? 'holds ":"' : null);
}

/** A queue name as the protocol allows it. */
export function isValidQueue(name: unknown): boolean {
  return typeof name === 'string' && queueNameProblem(name) === null;
}

/** Throws INVALID_QUEUE unless `name` is a usable queue name. */
export function queueNameOf(name: unknown, field = 'queue'): string {
  if (typeof name !== 'string') throw new BusError('INVALID_FRAME', `${field} must be a string`);
  const problem = queueNameProblem(name);
  if (problem !== null) throw new BusError('INVALID_QUEUE', `invalid queue name: ${field} ${problem}: ${quoted(name)}`);
  return name;
}

/** A task id sent by a client (`ack`, `fail`, REST paths). */
export function taskIdOf(value: unknown, field = 'taskId'): string {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return String(value);
  if (typeof value !== 'string') throw new BusError('INVALID_FRAME', `${field} must be a non-empty string`);
  const problem = nameProblem(value, MAX_TASK_ID_BYTES);
  if (problem !== null) throw new BusError('INVALID_FRAME', `${field} ${problem}: ${quoted(value)}`);
  // One of BullMQ's own keys of the queue, never a task: reading it as one would parse the queue's own hash.
  if (RESERVED_TASK_IDS.has(value)) throw new BusError('UNKNOWN_TASK', `no task ${quoted(value)}: the name of one of BullMQ's own keys for the queue`);
  return value;
}

/** Reads a backoff: a number (fixed ms) or `{type, delay}`; returns an error message instead when bad. */
function backoffOf(value: unknown): Backoff | string {
  if (isWholeNumber(value, 0, MAX_DELAY_MS)) return { type: 'fixed', delay: value };
  if (!isPlainObject(value)) return 'backoff must be a number of ms or {type: "exponential"|"fixed", delay}';
  const { type, delay } = value;
  if (type !== 'exponential' && type !== 'fixed') return 'backoff.type must be "exponential" or "fixed"';
  if (!isWholeNumber(delay, 0, MAX_DELAY_MS)) return 'backoff.delay must be a whole number of ms';
  return { type, delay };
}

/** Validates the `opts` of an enqueue; throws BusError naming the first bad field. */
export function parseTaskOptions(opts: unknown): TaskOptions {
  if (opts === undefined || opts === null) return {};
  if (!isPlainObject(opts)) throw new BusError('INVALID_FRAME', 'opts must be an object');
  for (const key of Object.keys(opts)) {
    if (!OPTION_NAMES.has(key)) throw new BusError('INVALID_FRAME', `unknown option opts.${key}`);
  }
  const options: TaskOptions = {};
  const { priority, delay, attempts, backoff, jobId, replyTo, timeout, traceparent, stream } = opts;
  if (priority !== undefined) {
    if (!isWholeNumber(priority, 0, MAX_PRIORITY)) {
      throw new BusError('INVALID_FRAME', `opts.priority must be a whole number from 0 (none) to ${MAX_PRIORITY}: lower runs first, after tasks without one`);
    }
    if (priority > 0) options.priority = priority;
  }
  if (delay !== undefined) {
    if (!isWholeNumber(delay, 0, MAX_DELAY_MS)) throw new BusError('INVALID_FRAME', 'opts.delay must be a whole number of ms');
    if (delay > 0) options.delay = delay;
  }
  if (attempts !== undefined) {
    if (!isWholeNumber(attempts, 1, MAX_ATTEMPTS)) {
      throw new BusError('INVALID_FRAME', `opts.attempts must be a whole number from 1 to ${MAX_ATTEMPTS}`);
    }
    options.attempts = attempts;
  }
  if (backoff !== undefined) {
    const parsed = backoffOf(backoff);
    if (typeof parsed === 'string') throw new BusError('INVALID_FRAME', `opts.${parsed}`);
    options.backoff = parsed;
  }
  if (jobId !== undefined) {
    // BullMQ refuses integer ids (its own ids are integers) and `:` (its key separator).
    const problem = typeof jobId !== 'string' ? 'is not a string'
      : nameProblem(jobId, MAX_TASK_ID_BYTES) ?? (/^\d+$/.test(jobId) ? 'is all digits' : jobId.includes(':') ? 'holds ":"' : null);
    if (typeof jobId !== 'string' || problem !== null) {
      throw new BusError('INVALID_FRAME', `opts.jobId must be a name of 1 to ${MAX_TASK_ID_BYTES} UTF-8 bytes, not all digits, without ":" or control characters: it ${problem}`);
    }
    if (RESERVED_TASK_IDS.has(jobId)) {
      throw new BusError('INVALID_FRAME', `opts.jobId ${JSON.stringify(jobId)} is the name of one of BullMQ's own keys for the queue: choose another`);
    }
    options.jobId = jobId;
  }
  if (replyTo !== undefined) {
    const problem = typeof replyTo === 'string' ? topicProblem(replyTo, false) : 'is not a string';
    if (problem !== null) throw new BusError('INVALID_TOPIC', `opts.replyTo must be a valid topic: it ${problem}`);
    options.replyTo = replyTo as string;
  }
  if (timeout !== undefined) {
    if (!isWholeNumber(timeout, 1, MAX_TIMEOUT_MS)) throw new BusError('INVALID_FRAME', 'opts.timeout must be a positive whole number of ms');
    options.timeout = timeout;
  }
  if (traceparent !== undefined) {
    if (!isTraceparent(traceparent)) throw new BusError('INVALID_FRAME', 'opts.traceparent must be a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)');
    options.traceparent = traceparent;
  }
  if (stream !== undefined) {
    if (typeof stream !== 'boolean') throw new BusError('INVALID_FRAME', 'opts.stream must be true or false');
    if (stream) options.stream = true;
  }
  return options;
}

/** Parses QUEUE_OVERRIDES; throws a readable Error (the config names the setting). */
export function parseQueueOverrides(raw: string): QueueOverrides {
  if (raw.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new Error('expected JSON: {"queue.name": {"attempts": 3, "backoff": {"type": "fixed", "delay": 500}}}');
  }
  if (!isPlainObject(parsed)) throw new Error('expected a JSON object keyed by queue name');
  const overrides: QueueOverrides = {};
  for (const [name, policy] of Object.entries(parsed)) {
    if (!isValidQueue(name)) throw new Error(`${JSON.stringify(name)} is not a valid queue name`);
    if (!isPlainObject(policy)) throw new Error(`${name}: expected {"attempts"?, "backoff"?, "timeout"?}`);
    const entry: QueueOverride = {};
    for (const [key, value] of Object.entries(policy)) {
      if (key === 'attempts') {
        if (!isWholeNumber(value, 1, MAX_ATTEMPTS)) throw new Error(`${name}.attempts must be a whole number from 1 to ${MAX_ATTEMPTS}`);
        entry.attempts = value;
      } else if (key === 'backoff') {
        const backoff = backoffOf(value);
        if (typeof backoff === 'string') throw new Error(`${name}.${backoff}`);
        entry.backoff = backoff;
      } else if (key === 'timeout') {
        if (!isWholeNumber(value, 1, MAX_TIMEOUT_MS)) throw new Error(`${name}.timeout must be a positive whole number of ms`);
        entry.timeout = value;
      } else {
        throw new Error(`${name}: unknown key ${JSON.stringify(key)} (attempts, backoff, timeout)`);
      }
    }
    overrides[name] = entry;
  }
  return overrides;
}
