import { ErrorCode, Job, QueueKeys, UnrecoverableError, type JobJson, type JobsOptions, type Queue, type Worker } from 'bullmq';
import type { Redis } from 'ioredis';

/**
 * The only module that relies on bullmq's internals: its raw script
 * replies, its Redis keys and job-hash fields, its error codes and its job
 * options as stored. test/bullmq-adapter-contract.test.ts exercises each of
 * them against the installed bullmq, so an upgrade that changes one fails
 * there, not in production.
 */

export type TaskJob = Job<unknown, unknown, string>;
export type TaskQueue = Queue<unknown, unknown, string>;
export type TaskWorker = Worker<unknown, unknown, string>;

/** Job options this gateway adds beyond BullMQ's (BullMQ stores unknown options as given). */
export type StoredOptions = JobsOptions & { replyTo?: string; timeout?: number; traceparent?: string };

/** The name the gateway's BullMQ workers record on the jobs they fetch (BullMQ's `processedBy`). */
export const GATEWAY_WORKER_NAME = 'brainstem-gateway';

/**
 * How many attempts a job gets, as BullMQ itself counts them: BullMQ stores
 * `attempts: 0` (or none) for a job added without the option and runs it
 * once; a fractional count retries while `attemptsMade + 1 < attempts`.
 */
export function maxAttemptsOf(opts: { attempts?: unknown }): number {
  const attempts = opts.attempts;
  return typeof attempts === 'number' && Number.isFinite(attempts) && attempts >= 1 ? Math.ceil(attempts) : 1;
}

/** The attempt timeout (ms) the task was enqueued with, if any. */
export function timeoutOf(job: TaskJob): number | undefined {
  const timeout = (job.opts as StoredOptions).timeout;
  return typeof timeout === 'number' && timeout > 0 ? timeout : undefined;
}

export function replyToOf(job: TaskJob): string | undefined {
  const replyTo = (job.opts as StoredOptions).replyTo;
  return typeof replyTo === 'string' ? replyTo : undefined;
}

export function traceparentOf(job: TaskJob): string | undefined {
  const traceparent = (job.opts as StoredOptions).traceparent;
  return typeof traceparent === 'string' ? traceparent : undefined;
}

/** BullMQ's errors for a job whose lock this gateway no longer holds. */
const LOST_LEASE_CODES = new Set<number>([
  ErrorCode.JobNotExist, ErrorCode.JobLockNotExist, ErrorCode.JobNotInState, ErrorCode.JobLockMismatch,
]);

export function isLostLease(err: unknown): boolean {
  return LOST_LEASE_CODES.has((err as { code?: unknown } | null)?.code as number);
}

/** The error a failed attempt is stored with: its stack is the reason alone, so the job keeps a list of reasons. */
export function attemptFailure(reason: string, final = false): Error {
  const error = final ? new UnrecoverableError(reason) : new Error(reason);
  error.stack = reason;
  return error;
}

/**
 * This delivery's job object without its backoff, so `moveToFailed` retries
 * it at once; the stored task keeps its options.
 */
export function dropBackoff(job: TaskJob): void {
  job.opts = { ...job.opts, backoff: undefined };
}

/** The job a completion fetched with `fetchNext` (`moveToCompleted`'s raw reply: `[jobData, jobId, …]`), if any. */
export function nextJobOf(worker: TaskWorker, reply: unknown, token: string): TaskJob | undefined {
  const [data, id] = Array.isArray(reply) ? reply as [JobJson | undefined, string | undefined] : [];
  if (!data || !id) return undefined;
  const job = Job.fromJSON<unknown, unknown, string>(worker, data, id);
  job.token = token;
  return job;
}

/** Suffixes of BullMQ's own keys for a queue (`PREFIX:QUEUE:SUFFIX`): a job with one of them as id would overwrite it. */
export const RESERVED_TASK_IDS: ReadonlySet<string> = new Set(
  Object.keys(new QueueKeys().getKeys('q')).filter((suffix) => suffix !== ''),
);

/**
 * Takes back the delivery count (`ats`) a fetch added, if `token` still
 * holds the job's lock: a delivery that reached no worker is not an attempt.
 */
const UNCOUNT_DELIVERY = `if redis.call('GET', KEYS[2]) == ARGV[1] then return redis.call('HINCRBY', KEYS[1], 'ats', -1) end return false`;

export async function uncountDelivery(connection: Redis, queue: TaskQueue, job: TaskJob, token: string): Promise<void> {
  const jobKey = queue.toKey(job.id as string);
  await connection.eval(UNCOUNT_DELIVERY, 2, jobKey, `${jobKey}:lock`, token);
}

/** Ids of the queue's active jobs and the lock token each is held with (null: no lock). */
export async function activeLocks(connection: Redis, queue: TaskQueue): Promise<{ id: string; token: string | null }[]> {
  const active = await connection.lrange(queue.keys.active as string, 0, -1);
  if (active.length === 0) return [];
  const locks = await connection.mget(active.map((id) => `${queue.toKey(id)}:lock`));
  return active.map((id, index) => ({ id, token: locks[index] ?? null }));
}

/** The key whose existence says a queue is known to Redis. */
export function metaKey(prefix: string, name: string): string {
  return `${prefix}:${name}:meta`;
}

/** Queue names among Redis keys matching `metaPattern(prefix)`. */
export function metaPattern(prefix: string): string {
  return `${prefix}:*:meta`;
}

export function queueNameOfMetaKey(prefix: string, key: string): string {
  return key.slice(prefix.length + 1, -':meta'.length);
}

/** A final settlement read from a queue's BullMQ event stream (`PREFIX:QUEUE:events`). */
export interface StreamSettlement {
  event: 'completed' | 'failed';
  jobId: string;
  failedReason?: string;
}

/**
 * Waits up to `blockMs` for an entry after `lastId` on the queue's event
 * stream; true when there is one. Only the first entry is read: what
 * matters in them is picked out in Redis (`settlementsAfter`).
 */
export async function waitForQueueEvents(connection: Redis, queue: TaskQueue, lastId: string, blockMs: number): Promise<boolean> {
  const reply = await connection.xread('COUNT', 1, 'BLOCK', blockMs, 'STREAMS', queue.keys.events as string, lastId);
  return (reply?.[0]?.[1]?.length ?? 0) > 0;
}

/**
 * Scans up to ARGV[2] entries after ARGV[1] and returns the last id seen,
 * how many were scanned, and the `completed` / `failed` ones of tasks
 * still stored (their hash, ARGV[3] .. jobId, has a `timestamp`) that no
 * worker named ARGV[4] (the gateway's) fetched last (BullMQ's `pb`; unset
 * by an unnamed Worker). BullMQ's entries are flat field lists: `event`,
 * `jobId`, then per-event fields.
 */
const SETTLEMENTS_AFTER = `
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
local found = {}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  local event, jobId, reason = false, false, false
  for i = 1, #fields - 1, 2 do
    local key = fields[i]
    if key == 'event' then event = fields[i + 1]
    elseif key == 'jobId' then jobId = fields[i + 1]
    elseif key == 'failedReason' then reason = fields[i + 1] end
  end
  if jobId and (event == 'completed' or event == 'failed') then
    local job = redis.call('HMGET', ARGV[3] .. jobId, 'pb', 'timestamp')
    if job[2] and job[1] ~= ARGV[4] then found[#found + 1] = { event, jobId, reason } end
  end
end
local last = entries[#entries]
return { last and last[1] or ARGV[1], #entries, found }`;

/**
 * The settlements by other workers among the next `count` entries of the
 * queue's event stream after `lastId`, picked out in Redis: a task makes
 * five or more entries, and the gateway's own settlements are most of the
 * rest; decoding them all was a fifth of the gateway's CPU under load.
 */
export async function settlementsAfter(connection: Redis, queue: TaskQueue, lastId: string, count: number): Promise<{ lastId: string; scanned: number; settlements: StreamSettlement[] }> {
  const [last, scanned, found] = await connection.eval(
    SETTLEMENTS_AFTER, 1, queue.keys.events as string, lastId, count, queue.toKey(''), GATEWAY_WORKER_NAME,
  ) as [string, number, [string, string, string | null][]];
  const settlements = found.map(([event, jobId, reason]) => {
    const settlement: StreamSettlement = { event: event as StreamSettlement['event'], jobId };
    if (reason !== null) settlement.failedReason = reason;
    return settlement;
  });
  return { lastId: last, scanned, settlements };
}
