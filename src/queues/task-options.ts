import { BusError } from '../bus/protocol.js';
import { isValidQueueName, isValidTopic } from '../bus/topic.js';
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
}

/** BullMQ's own limits: priorities up to 2^21-1, attempts we cap for sanity. */
export const MAX_PRIORITY = 2 ** 21 - 1;
export const MAX_ATTEMPTS = 1000;
const MAX_DELAY_MS = 365 * 24 * 3600 * 1000;
const MAX_TASK_ID_LENGTH = 256;
const OPTION_NAMES = new Set(['priority', 'delay', 'attempts', 'backoff', 'jobId', 'replyTo', 'timeout', 'traceparent']);
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isWholeNumber(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

/** A queue name as the protocol allows it; BullMQ also refuses `:` in names. */
export function isValidQueue(name: unknown): boolean {
  return isValidQueueName(name) && !(name as string).includes(':');
}

/** Throws INVALID_QUEUE unless `name` is a usable queue name. */
export function queueNameOf(name: unknown): string {
  if (typeof name !== 'string') throw new BusError('INVALID_FRAME', 'queue must be a string');
  if (!isValidQueue(name)) {
    throw new BusError('INVALID_QUEUE', `invalid queue name: ${JSON.stringify(name.slice(0, 200))}`);
  }
  return name;
}

/** A task id sent by a client (`ack`, `fail`, REST paths). */
export function taskIdOf(value: unknown): string {
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value !== 'string' || value === '') throw new BusError('INVALID_FRAME', 'taskId must be a non-empty string');
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
  const { priority, delay, attempts, backoff, jobId, replyTo, timeout, traceparent } = opts;
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
    if (typeof jobId !== 'string' || jobId === '' || jobId.length > MAX_TASK_ID_LENGTH
      || /^\d+$/.test(jobId) || jobId.includes(':')) {
      throw new BusError('INVALID_FRAME', `opts.jobId must be a string of 1 to ${MAX_TASK_ID_LENGTH} characters, not all digits, without ":"`);
    }
    if (RESERVED_TASK_IDS.has(jobId)) {
      throw new BusError('INVALID_FRAME', `opts.jobId ${JSON.stringify(jobId)} is the name of one of BullMQ's own keys for the queue: choose another`);
    }
    options.jobId = jobId;
  }
  if (replyTo !== undefined) {
    if (!isValidTopic(replyTo)) throw new BusError('INVALID_TOPIC', 'opts.replyTo must be a valid topic');
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
