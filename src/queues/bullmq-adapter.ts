import { createRequire } from 'node:module';
import {
  ErrorCode, Job, Queue, QueueKeys, raw2NextJobData, RedisQueueBackend, UnrecoverableError, type JobJson, type KeysMap, type QueueBaseOptions, type Span, type SpanKind, type Worker, type WorkerOptions,
} from 'bullmq';
import type { Redis } from 'ioredis';
import { markUnreadable, type StoredOptions } from './stored-task.js';
import { settleEach, type Settles } from './tick-batch.js';

/**
 * The only module that relies on bullmq's internals: its raw script
 * replies, its Redis keys and job-hash fields and its error codes (what
 * the gateway adds to a job's options is stored-task.ts).
 * test/bullmq-adapter-contract.test.ts exercises each of
 * them against the installed bullmq, so an upgrade that changes one fails
 * there, not in production.
 */

export type TaskJob = Job<unknown, unknown, string>;
export type TaskQueue = Queue<unknown, unknown, string>;
export type TaskWorker = Worker<unknown, unknown, string>;

/** The options BullMQ's scripts read from a worker: lock duration, stalled check, backoff, name. */
export type FetchOptions = Pick<WorkerOptions, 'lockDuration' | 'stalledInterval' | 'maxStalledCount' | 'settings' | 'name' | 'prefix'>;

/**
 * What BullMQ's `Job` and a worker's scripts need of the queue a job
 * belongs to, without a `Worker`: a Worker holds a blocking Redis
 * connection of its own, and the gateway keeps one per queue name a
 * client may choose. Each host runs BullMQ's scripts on the template's
 * shared connection through a backend of its own beside the template's
 * (as BullMQ's `forQueue` makes for FlowProducer), on its queue's keys.
 */
export interface JobHost {
  readonly name: string;
  readonly opts: FetchOptions;
  readonly backend: RedisQueueBackend;
  /** The queue's marker key: a BZPOPMIN on it wakes when the queue has work. */
  readonly markerKey: string;
  readonly qualifiedName: string;
  toKey(type: string): string;
  trace: TaskQueue['trace'];
  emit(): boolean;
  on(): JobHost;
  removeListener(): JobHost;
  waitUntilReady(): Promise<unknown>;
}

/** Methods on the prototype, not closures per host: the gateway keeps one host per live queue. */
class QueueJobHost implements JobHost {
  readonly name: string;
  readonly backend: RedisQueueBackend;
  readonly markerKey: string;
  readonly qualifiedName: string;

  constructor(private readonly template: TaskQueue, queue: TaskQueue, readonly opts: FetchOptions) {
    this.name = queue.name;
    // The template's connection, the queue's own keys (not a copy of each)
    // and the worker's options, which are all its scripts read (BullMQ's
    // type asks for a connection too: a backend given one never reads it).
    // A backend that does not own its connection closes nothing.
    this.backend = new RedisQueueBackend(
      (template.getBackend() as RedisQueueBackend).connection, queue.name, queue.keys, queue.toKey, opts as FetchOptions & QueueBaseOptions, undefined, false,
    );
    this.markerKey = queue.keys.marker as string;
    this.qualifiedName = queue.qualifiedName;
  }

  toKey(type: string): string {
    return this.backend.toKey(type);
  }

  trace<T>(
    spanKind: SpanKind, operation: string, destination: string, callback: (span?: Span, dstPropagationMetadata?: string) => Promise<T> | T, srcPropagationMetadata?: string,
  ): Promise<T | Promise<T>> {
    return this.template.trace(spanKind, operation, destination, callback, srcPropagationMetadata);
  }

  emit(): boolean {
    return false;
  }

  on(): JobHost {
    return this;
  }

  removeListener(): JobHost {
    return this;
  }

  waitUntilReady(): Promise<unknown> {
    return this.template.waitUntilReady();
  }
}

/** The job host of `queue`, running its scripts on the template's connection with `opts` (one object for every queue). */
export function jobHost(template: TaskQueue, queue: TaskQueue, opts: FetchOptions): JobHost {
  return new QueueJobHost(template, queue, opts);
}

/** Suffixes of BullMQ's keys for a queue (`PREFIX:QUEUE:SUFFIX`), as its QueueKeys makes them. */
const KEY_SUFFIXES = Object.keys(new QueueKeys().getKeys('q'));

/**
 * BullMQ's keys of a queue, each on one `PREFIX:QUEUE` string: QueueKeys
 * builds that string once per key, nineteen copies a queue holds.
 */
function keysOf(prefix: string, name: string): KeysMap {
  const qualifiedName = `${prefix}:${name}`;
  const keys: KeysMap = {};
  for (const suffix of KEY_SUFFIXES) keys[suffix] = `${qualifiedName}:${suffix}`;
  return keys;
}

/**
 * A BullMQ queue of that name on the template's connection wrapper: its
 * backend is made as BullMQ's default factory makes one, except that it
 * does not own that connection (as BullMQ's `forQueue` siblings do). Its
 * own wrapper would add three listeners to the shared client and hold its
 * start-up state, for each queue. A backend that does not own its
 * connection forwards no connection events: the template's `error`
 * listener hears them once for every queue.
 */
export function queueBeside(template: TaskQueue, name: string, prefix: string): TaskQueue {
  const { connection } = template.getBackend() as RedisQueueBackend;
  const keys = keysOf(prefix, name);
  const keyPrefix = keys[''] as string;
  return new Queue<unknown, unknown, string>(name, { ...template.opts, prefix }, (_name, opts) => new RedisQueueBackend(
    connection, name, keys, (type) => `${keyPrefix}${type}`, opts, undefined, false,
  ));
}

/** What a fetch found: the job, if any, and when the next delayed job is due (0: none). */
export interface Fetched {
  job: TaskJob | undefined;
  delayUntil: number;
}

/** A moveToActive reply as BullMQ reads it (`raw2NextJobData`: `[jobJson, id, rateLimitDelay, delayUntil]`). */
function fetchedOf(host: JobHost, next: [JobJson | undefined, string | undefined, number, number], token: string): Fetched {
  const [data, id, , delayUntil] = next;
  const due = typeof delayUntil === 'number' && delayUntil > 0 ? delayUntil : 0;
  if (!data || !id) return { job: undefined, delayUntil: due };
  const job = readJob(host, data, id);
  job.token = token;
  return { job, delayUntil: due };
}

/** BullMQ's moveToActive for one host: the next job (locked with `token`), if any, and when the next delayed job is due. */
export async function moveToActive(host: JobHost, token: string): Promise<Fetched> {
  const next = await host.backend.moveToActive(token, host.opts.name as string) as [JobJson | undefined, string | undefined, number, number];
  return fetchedOf(host, next, token);
}

/** The installed BullMQ's own Lua scripts (its CommonJS build, the one `import 'bullmq'` loads). */
const bullmqScripts = createRequire(import.meta.url)('bullmq/dist/cjs/scripts/index.js') as Record<string, { content: string; keys: number }>;

/** Where BullMQ's moveToActive script decodes its options, and where its body starts after its functions. */
export const MOVE_TO_ACTIVE_OPTS = 'local opts = cmsgpack.unpack(ARGV[3])';
export const MOVE_TO_ACTIVE_BODY = '\nlocal isPausedOrMaxed, rateLimitMax, rateLimitDuration =';

/**
 * BullMQ's moveToActive run once per lock token (ARGV[4..]) in one call,
 * until a run finds no job: its body, unchanged, becomes a function over
 * the options (token included), so priorities, delayed jobs, rate limits,
 * pause, markers, `ats`, locks and events stay BullMQ's for every job.
 * The options come as JSON (Redis's cjson), not msgpack: the same table
 * without a msgpack encoder here. Once nothing is left waiting, the base
 * marker its last run set (BullMQ sets it after every job it moves, for
 * other workers) is taken back: it would wake the queue's next wait only
 * for a fetch that finds nothing. Answers BullMQ's raw replies in order.
 */
export function moveManyToActiveScript(script: { content: string; keys: number } | undefined): string {
  const content = script?.content ?? '';
  const body = content.indexOf(MOVE_TO_ACTIVE_BODY);
  if (script?.keys !== 11 || body < 0 || content.split(MOVE_TO_ACTIVE_OPTS).length !== 2 || content.indexOf(MOVE_TO_ACTIVE_OPTS) > body) {
    throw new Error('the installed bullmq\'s moveToActive script is not the one the batched fetch wraps: see test/bullmq-adapter-contract.test.ts');
  }
  return `${content.slice(0, body).replace(MOVE_TO_ACTIVE_OPTS, 'local opts = cjson.decode(ARGV[3])')}
local function moveOne()${content.slice(body)}
end
local replies = {}
for i = 4, #ARGV do
  opts['token'] = ARGV[i]
  local reply = moveOne()
  replies[#replies + 1] = reply
  if reply[1] == 0 then break end
end
if redis.call('LLEN', KEYS[1]) == 0 and redis.call('ZCARD', KEYS[3]) == 0 then
  redis.call('ZREM', KEYS[11], '0')
end
return replies`;
}


/** BullMQ's own client under a backend, on which its scripts run (its commands are defined there). */
interface ScriptClient {
  /** Without `numberOfKeys`, the command's first argument is the number of keys. */
  defineCommand(name: string, definition: { numberOfKeys?: number; lua: string }): void;
  runCommand(name: string, args: (string | number)[]): Promise<unknown>;
}

/**
 * One of BullMQ's scripts wrapped to run once per item (the `…ManyScript`
 * builders): built from the installed script at its first use, and defined
 * on each BullMQ client it runs on, once.
 */
class BatchedScript {
  private lua: string | undefined;
  private readonly definedOn = new WeakSet<ScriptClient>();

  /** `numberOfKeys` undefined: the call's first argument gives it. */
  constructor(private readonly name: string, private readonly numberOfKeys: number | undefined, private readonly build: () => string) {}

  run(client: ScriptClient, args: (string | number)[]): Promise<unknown> {
    if (!this.definedOn.has(client)) {
      this.lua ??= this.build();
      client.defineCommand(this.name, this.numberOfKeys === undefined ? { lua: this.lua } : { numberOfKeys: this.numberOfKeys, lua: this.lua });
      this.definedOn.add(client);
    }
    return client.runCommand(this.name, args);
  }
}

const moveManyToActiveBatch = new BatchedScript('brainstemMoveManyToActive', 11, () => moveManyToActiveScript(bullmqScripts.moveToActive));

/**
 * BullMQ's moveToActive for each of `tokens` in one Redis call, on the
 * connection and keys BullMQ's own call uses: one result per token, in
 * order (an Error for a job BullMQ could not read; no job for the tokens
 * after the first run that found none).
 */
export async function moveManyToActive(host: JobHost, tokens: string[]): Promise<(Fetched | Error)[]> {
  return sendMoveManyToActive(await backendQueueOf(host.backend).client, host, tokens);
}

/** What BullMQ's scripts read of a backend (a private field): its client and its worker's options. */
function backendQueueOf(backend: RedisQueueBackend): { client: Promise<ScriptClient>; opts: WorkerOptions } {
  return (backend as unknown as { queue: { client: Promise<ScriptClient>; opts: WorkerOptions } }).queue;
}

/** moveManyToActive's call, written to `client` now (behind whatever was written to it before). */
function sendMoveManyToActive(client: ScriptClient, host: JobHost, tokens: string[]): Promise<(Fetched | Error)[]> {
  const { opts: workerOpts } = backendQueueOf(host.backend);
  const keys = host.backend.keys;
  const opts: Record<string, unknown> = { token: '', lockDuration: workerOpts.lockDuration };
  if (workerOpts.limiter) opts.limiter = workerOpts.limiter;
  if (host.opts.name) opts.name = host.opts.name;
  const call = moveManyToActiveBatch.run(client, [
    keys.wait, keys.active, keys.prioritized, keys.events, keys.stalled, keys.limiter, keys.delayed,
    keys.paused, keys.meta, keys.pc, keys.marker,
    keys[''], Date.now(), JSON.stringify(opts), ...tokens,
  ] as (string | number)[]) as Promise<unknown[][]>;
  return call.then((replies) => {
    let last: Fetched = { job: undefined, delayUntil: 0 };
    return tokens.map((token, index) => {
      const reply = replies[index];
      if (reply === undefined) return { job: undefined, delayUntil: last.delayUntil };
      try {
        last = fetchedOf(host, raw2NextJobData(reply) as [JobJson | undefined, string | undefined, number, number], token);
        return last;
      } catch (err) {
        return err as Error;
      }
    });
  });
}

/** Where BullMQ's moveToFinished script's body starts, after its functions (none of which reads KEYS or ARGV). */
export const MOVE_TO_FINISHED_BODY = '\nlocal jobIdKey = KEYS[12]\n';

/**
 * BullMQ's moveToFinished run once per job in one call: its body, unchanged,
 * becomes a function of its own KEYS and ARGV (parameters shadowing the
 * globals), called for each job's 14 keys and ARGV[1] arguments in turn.
 * A key or argument that every job of the call shares (the queue's keys,
 * the target, the timestamp of one millisecond) is sent once: ARGV[2] and
 * ARGV[3] mark each position `s` (shared, sent first, in order) or `j`
 * (each job's, after them, job by job); ARGV[4] is the number of jobs. Each
 * job's run reads the same two tables, refilled, so the body must not
 * write into KEYS or ARGV. Answers BullMQ's raw replies in order.
 */
export function finishManyScript(script: { content: string; keys: number } | undefined): string {
  const content = script?.content ?? '';
  const body = content.indexOf(MOVE_TO_FINISHED_BODY);
  if (script?.keys !== 14 || body < 0 || /KEYS|ARGV/.test(content.slice(0, body).replace(/--\[\[[\s\S]*?\]\]/g, ''))
    || /(KEYS|ARGV)\[[^\]]*\]\s*=[^=]/.test(content.slice(body))) {
    throw new Error('the installed bullmq\'s moveToFinished script is not the one the batched ack wraps: see test/bullmq-adapter-contract.test.ts');
  }
  return `${content.slice(0, body)}
local function finishOne(KEYS, ARGV)${content.slice(body)}
end
local argc, keyMask, argMask, count = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local keys, argv, jobKeys, jobArgs = {}, {}, {}, {}
local k, a = 1, 5
for p = 1, 14 do
  if keyMask:sub(p, p) == 's' then keys[p] = KEYS[k]; k = k + 1 else jobKeys[#jobKeys + 1] = p end
end
for p = 1, argc do
  if argMask:sub(p, p) == 's' then argv[p] = ARGV[a]; a = a + 1 else jobArgs[#jobArgs + 1] = p end
end
local replies = {}
for i = 1, count do
  for _, p in ipairs(jobKeys) do keys[p] = KEYS[k]; k = k + 1 end
  for _, p in ipairs(jobArgs) do argv[p] = ARGV[a]; a = a + 1 end
  replies[i] = finishOne(keys, argv)
end
return replies`;
}

/**
 * The call of finishManyScript for these rows (each a job's keys, then its
 * arguments, as BullMQ builds them): what all rows share once, then what
 * each row has of its own.
 */
function finishManyArgs(rows: unknown[][], keyCount: number): unknown[] {
  const [first] = rows as [unknown[]];
  const shared = first.map((value, p) => rows.every((row) => row[p] === value));
  const mask = (from: number, to: number) => shared.slice(from, to).map((s) => (s ? 's' : 'j')).join('');
  const keys = first.slice(0, keyCount).filter((_, p) => shared[p]);
  const args = first.slice(keyCount).filter((_, p) => shared[keyCount + p]);
  for (const row of rows) {
    row.forEach((value, p) => {
      if (shared[p]) return;
      (p < keyCount ? keys : args).push(value);
    });
  }
  return [keys.length, ...keys, first.length - keyCount, mask(0, keyCount), mask(keyCount, first.length), rows.length, ...args];
}

const finishManyBatch = new BatchedScript('brainstemFinishMany', undefined, () => finishManyScript(bullmqScripts.moveToFinished));

/** A held job to complete: BullMQ's `job.moveToCompleted(result, token, fetchNext)`. */
export interface Completion {
  job: TaskJob;
  result: unknown;
  token: string;
  fetchNext: boolean;
}

/**
 * BullMQ's moveToCompleted for each completion, in one Redis call on the
 * connection BullMQ's own call uses, its arguments built by BullMQ
 * (`moveToCompletedArgs`). Per completion, in order: what BullMQ's call
 * answers (what `nextJobOf` reads), or the error BullMQ's call would throw
 * (a lost lock's code, a result JSON cannot hold). The job object is
 * updated as BullMQ's call updates it; the gateway's hosts carry no
 * telemetry, so BullMQ's span and metrics around it are no-ops.
 */
export async function completeMany(host: JobHost, completions: Completion[]): Promise<unknown[]> {
  const backend = host.backend;
  const results: unknown[] = [];
  const rows: unknown[][] = [];
  const sent: { index: number; completion: Completion; finishedOn: number }[] = [];
  completions.forEach((completion, index) => {
    const { job, result, token, fetchNext } = completion;
    try {
      const args = backend.moveToCompletedArgs(job, JSON.stringify(result), job.opts.removeOnComplete as boolean, token, fetchNext) as unknown[];
      rows.push(args);
      sent.push({ index, completion, finishedOn: args[15] as number });
    } catch (err) {
      results[index] = err;
    }
  });
  if (sent.length === 0) return results;
  const client = await backendQueueOf(backend).client;
  const replies = await finishManyBatch.run(client, finishManyArgs(rows, 14) as (string | number)[]) as unknown[];
  sent.forEach(({ index, completion, finishedOn }, i) => {
    const reply = replies[i];
    const { job, result } = completion;
    if (typeof reply === 'number' && reply < 0) {
      results[index] = backend.finishedErrors({ code: reply, jobId: job.id as string, command: 'moveToFinished', state: 'active' });
      return;
    }
    job.returnvalue = result || undefined;
    job.finishedOn = finishedOn;
    job.attemptsMade += 1;
    try {
      results[index] = raw2NextJobData(reply as unknown[]);
    } catch (err) {
      results[index] = err;
    }
  });
  return results;
}

/** The keys and arguments BullMQ sends its addStandardJob script: the queue's 9 keys, then the job's 3. */
const ADD_STANDARD_JOB_KEYS = 9;
const ADD_STANDARD_JOB_ARGS = 3;

/**
 * BullMQ's addStandardJob run once per job in one call: the whole script,
 * unchanged, becomes a function of its own KEYS and ARGV (parameters
 * shadowing the globals; its first lines read them, before its functions),
 * called with the queue's keys and each job's three arguments in turn.
 * Each run is protected, so that one job's error is that job's reply, not
 * the batch's; a run's nil reply stays in its place as false (a nil would
 * end Redis's array there). Answers BullMQ's raw replies in order.
 */
export function addManyScript(script: { content: string; keys: number } | undefined): string {
  const content = script?.content ?? '';
  // A shebang line (the script's flags) must stay its first line, outside any function.
  if (script?.keys !== ADD_STANDARD_JOB_KEYS || content.startsWith('#!')) {
    throw new Error('the installed bullmq\'s addStandardJob script is not the one the batched enqueue wraps: see test/bullmq-adapter-contract.test.ts');
  }
  return `local function addOne(KEYS, ARGV)
${content}
end
local replies = {}
for i = 0, #ARGV / ${ADD_STANDARD_JOB_ARGS} - 1 do
  local a = i * ${ADD_STANDARD_JOB_ARGS}
  local ok, reply = pcall(addOne, KEYS, { ARGV[a + 1], ARGV[a + 2], ARGV[a + 3] })
  if not ok then
    reply = redis.error_reply(type(reply) == 'table' and reply.err or tostring(reply))
  elseif reply == nil then
    reply = false
  end
  replies[i + 1] = reply
end
return replies`;
}

const addManyBatch = new BatchedScript('brainstemAddMany', ADD_STANDARD_JOB_KEYS, () => addManyScript(bullmqScripts.addStandardJob));

/** A task to store: BullMQ's `queue.add(name, data, opts)`. */
export interface NewJob {
  name: string;
  data: unknown;
  opts: StoredOptions;
}

/**
 * A fetch sent right behind a batch of enqueues on the enqueues' connection,
 * so Redis runs it after them and both answer in one round trip (a drained
 * queue's waiting fetch finds the task just stored without waiting for its
 * marker). That connection is the fail-fast one, not the fetcher's: a
 * failure there fails this fetch as any fetch error (a lost reply leaves
 * an orphan that recovery gives back).
 */
export interface FetchBehind extends Settles<Fetched> {
  host: JobHost;
  token: string;
}

/** A script call BullMQ's insert of one job made, held for the batch. */
interface HeldAdd extends Settles<unknown> {
  args: unknown[];
}

/** BullMQ's addStandardJob for each held call, in one call of the batched script: each settles with its own reply. */
function sendHeld(client: ScriptClient, held: HeldAdd[]): void {
  const [first] = held;
  if (!first) return;
  const args = [...first.args.slice(0, ADD_STANDARD_JOB_KEYS), ...held.flatMap((add) => add.args.slice(ADD_STANDARD_JOB_KEYS))];
  settleEach(held, addManyBatch.run(client, args as (string | number)[]) as Promise<unknown[]>);
}

/**
 * BullMQ's `queue.add` for each job, in order, the standard ones (neither
 * delayed nor prioritized) in as few Redis calls as their order allows, on
 * the queue's own connection: BullMQ builds each job and its script
 * arguments itself (`job.addJob` given a client that holds its
 * addStandardJob call for the batch; any other call, a delayed or
 * prioritized job's script, first sends what is held, then goes as BullMQ
 * sends it, so Redis runs every add in the order given), reads each reply
 * as it reads its own (an error code becomes its error) and the queue
 * emits `waiting` for each job added. Per job, in order: the job, or the
 * error `queue.add` would reject with. The gateway's queues carry no
 * telemetry, so `add`'s span is a no-op, and their ids are never `0`
 * (BullMQ's own check before `add`).
 */
export async function addMany(queue: TaskQueue, jobs: NewJob[], behind?: FetchBehind): Promise<(TaskJob | Error)[]> {
  const client = await ((queue.getBackend() as RedisQueueBackend).client as unknown as Promise<ScriptClient>).catch((err: unknown) => {
    behind?.reject(err);
    throw err;
  });
  let held: HeldAdd[] = [];
  const holding: Pick<ScriptClient, 'runCommand'> = {
    runCommand: (name, args) => {
      if (name.startsWith('addStandardJob:') && args.length === ADD_STANDARD_JOB_KEYS + ADD_STANDARD_JOB_ARGS) {
        return new Promise((resolve, reject) => held.push({ args, resolve, reject }));
      }
      sendHeld(client, held);
      held = [];
      return client.runCommand(name, args);
    },
  };
  // BullMQ's job.addJob makes its script call before its first await: every call is made once the map has run.
  const added = jobs.map(async ({ name, data, opts }): Promise<TaskJob | Error> => {
    try {
      const job = new Job<unknown, unknown, string>(queue, name, data, { ...queue.jobsOpts, ...opts, jobId: opts.jobId }, opts.jobId);
      const parentKeyOpts = { parentKey: job.parentKey, parentDependenciesKey: job.parentKey ? `${job.parentKey}:dependencies` : '' };
      job.id = await job.addJob(holding as never, parentKeyOpts);
      queue.emit('waiting', job);
      return job;
    } catch (err) {
      return err as Error;
    }
  });
  sendHeld(client, held);
  if (behind) {
    sendMoveManyToActive(client, behind.host, [behind.token]).then(([fetched]) => {
      if (fetched instanceof Error) behind.reject(fetched);
      else behind.resolve(fetched ?? { job: undefined, delayUntil: 0 });
    }, behind.reject);
  }
  return Promise.all(added);
}

/** Extends the locks of `ids` (held with `tokens`); resolves with the ids whose lock was lost. */
export function extendLocks(host: JobHost, ids: string[], tokens: string[], ms: number): Promise<string[]> {
  return host.backend.extendLocks(ids, tokens, ms);
}

/** BullMQ's stalled check of one queue: jobs whose lock expired go back to wait (or fail past maxStalledCount). */
export async function moveStalledToWait(host: JobHost): Promise<string[]> {
  // BullMQ's script answers the ids it moved back to wait (an empty table
  // when another check ran within stalledInterval).
  const reply: unknown = await host.backend.moveStalledJobsToWait();
  return Array.isArray(reply) ? reply.map(String) : [];
}

/** The name the gateway's BullMQ workers record on the jobs they fetch (BullMQ's `processedBy`). */
export const GATEWAY_WORKER_NAME = 'brainstem-gateway';

/**
 * A job from its hash, as BullMQ's `Job.fromJSON` reads it, except that
 * data that is not JSON (a foreign producer's, or written by hand) gives a
 * job marked unreadable instead of an exception in the fetch loop.
 */
export function readJob(host: JobHost, data: JobJson, id: string): TaskJob {
  const queue = host as unknown as TaskWorker;
  try {
    return Job.fromJSON<unknown, unknown, string>(queue, data, id);
  } catch (err) {
    const job = Job.fromJSON<unknown, unknown, string>(queue, { ...data, data: 'null' }, id);
    markUnreadable(job, (err as Error).message);
    return job;
  }
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

/** What a completion with `fetchNext` fetched (`moveToCompleted`'s reply as BullMQ reads it: `[jobData, jobId, rateLimitDelay, delayUntil]`). */
export function nextJobOf(host: JobHost, reply: unknown, token: string): Fetched {
  if (!Array.isArray(reply)) return { job: undefined, delayUntil: 0 };
  return fetchedOf(host, reply as [JobJson | undefined, string | undefined, number, number], token);
}

/** Suffixes of BullMQ's own keys for a queue (`PREFIX:QUEUE:SUFFIX`): a job with one of them as id would overwrite it. */
export const RESERVED_TASK_IDS: ReadonlySet<string> = new Set(KEY_SUFFIXES.filter((suffix) => suffix !== ''));

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

/** A queue's BullMQ event stream (`PREFIX:QUEUE:events`). */
export function eventsKeyOf(queue: TaskQueue): string {
  return queue.keys.events as string;
}

/**
 * Waits up to `blockMs` for an entry on any of the streams after its last
 * id; resolves with the keys that have one, each with the id of the one
 * entry read: what matters in them is picked out in Redis (`settlementsAfter`).
 */
export async function waitForStreamEntries(connection: Redis, streams: [key: string, lastId: string][], blockMs: number): Promise<Map<string, string>> {
  const reply = await connection.xread('COUNT', 1, 'BLOCK', blockMs, 'STREAMS', ...streams.map(([key]) => key), ...streams.map(([, id]) => id));
  const ready = new Map<string, string>();
  for (const [key, entries] of reply ?? []) {
    const first = entries[0];
    if (first) ready.set(key, first[0]);
  }
  return ready;
}

/** Pops the marker of each queue whose marker key has one; answers key, score, key, score … */
const POP_MARKERS = `
local popped = {}
for _, key in ipairs(KEYS) do
  local marker = redis.call('ZPOPMIN', key)
  if marker[1] then
    popped[#popped + 1] = key
    popped[#popped + 1] = marker[2]
  end
end
return popped`;

/**
 * Every BullMQ marker among `markerKeys` that is set, taken as a Worker's
 * BZPOPMIN takes one (score 0: work now; a time: the next delayed job), in
 * one round trip: after a wake, the other queues that got work meanwhile
 * are found at once instead of one blocking call each.
 */
export async function popMarkers(connection: Redis, markerKeys: string[]): Promise<Map<string, number>> {
  const reply = await connection.eval(POP_MARKERS, markerKeys.length, ...markerKeys) as string[];
  const markers = new Map<string, number>();
  for (let i = 0; i + 1 < reply.length; i += 2) markers.set(reply[i] as string, Number(reply[i + 1]));
  return markers;
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

/** The id of the active job whose lock is `token`, if any: the one a failed fetch had moved to active. */
export async function jobLockedWith(connection: Redis, queue: TaskQueue, token: string): Promise<string | null> {
  const locks = await activeLocks(connection, queue);
  return locks.find((lock) => lock.token === token)?.id ?? null;
}

/** Fields of a job hash BullMQ parses as JSON when it reads the job, and what stands in for one that is not. */
const JSON_FIELDS: Record<string, string | null> = { data: 'null', opts: '{}', progress: '0', parent: null };

/**
 * A job hash BullMQ could not read, made readable: each JSON field that
 * does not parse is kept under `unreadable:FIELD` and replaced (or
 * removed), so the job can be failed with BullMQ's own commands. Returns
 * the fields replaced; `gone` when the hash itself is missing (its id is
 * then taken out of the active list, since nothing else ever will).
 */
export async function repairUnreadable(connection: Redis, queue: TaskQueue, id: string, token: string): Promise<{ gone: true } | { fields: string[] }> {
  const key = queue.toKey(id);
  const hash = await connection.hgetall(key);
  if (Object.keys(hash).length === 0) {
    await connection.eval(DROP_ORPHAN, 2, queue.keys.active as string, `${key}:lock`, id, token);
    return { gone: true };
  }
  const fields: string[] = [];
  for (const [field, stand] of Object.entries(JSON_FIELDS)) {
    const value = hash[field];
    if (value === undefined) continue;
    try {
      JSON.parse(value);
    } catch {
      fields.push(field);
      await connection.hset(key, `unreadable:${field}`, value);
      if (stand === null) await connection.hdel(key, field);
      else await connection.hset(key, field, stand);
    }
  }
  return { fields };
}

/** Takes a job whose hash is gone out of the active list, if `token` still locks it. */
const DROP_ORPHAN = `if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('LREM', KEYS[1], 0, ARGV[1]) redis.call('DEL', KEYS[2]) return 1 end return 0`;

/** A job as stored, read with BullMQ's own reader (after `repairUnreadable`). */
export async function storedJob(queue: TaskQueue, id: string): Promise<TaskJob | undefined> {
  return Job.fromId<unknown, unknown, string>(queue, id);
}
