import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { Queue, Worker, type JobType } from 'bullmq';
import type { Redis } from 'ioredis';
import { BusError } from '../bus/protocol.js';
import {
  activeLocks, attemptFailure, dropBackoff, GATEWAY_WORKER_NAME, isLostLease, maxAttemptsOf, metaKey, metaPattern, nextJobOf,
  queueNameOfMetaKey, replyToOf, uncountDelivery, type StoredOptions, type TaskJob,
} from './bullmq-adapter.js';
import { ForeignSettlements } from './foreign-settlements.js';
import type { QueueLogger } from './queue-logger.js';
import { TaskStateError } from './task-state-error.js';
export { TaskStateError } from './task-state-error.js';
import { CreditLedger, type PullId, type TaskConsumer } from './credit-ledger.js';
import { LeaseTable, type Lease } from './lease-table.js';
import { MAX_ATTEMPTS, type QueueOverrides, type RetryPolicy, type TaskOptions } from './task-options.js';
import { GATEWAY_SOURCE, type TaskOutcome } from './task-outcome.js';

export type { QueueLogger } from './queue-logger.js';

export interface QueueServiceOptions {
  /** Fails fast while Redis is down: enqueue and REST answer UNAVAILABLE at once. */
  queueConnection: Redis;
  /** Retries forever (maxRetriesPerRequest null): fetching, ack, fail and lock renewal wait for Redis. */
  workerConnection: Redis;
  /** A new connection like `workerConnection`, for a queue's event stream (a blocking read). */
  createEventConnection(): Redis;
  prefix: string;
  defaults: RetryPolicy;
  overrides: QueueOverrides;
  leaseMs: number;
  stalledCheckMs: number;
  keepCompleted: number;
  storeTimeoutMs: number;
  log: QueueLogger;
  /** Called for every acked, failed and dead task (the plugin publishes it on the bus). */
  onOutcome(outcome: TaskOutcome): void;
}

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

/** Fetches in flight per queue once tasks are flowing (one while the queue is idle). */
const MAX_PARALLEL_FETCHES = 16;
/** BullMQ's blocking wait on an empty queue, in seconds; a new task wakes it at once. */
const DRAIN_DELAY_S = 5;
const FETCH_RETRY_MS = 1000;
/** After Redis comes back, resent commands settle before orphans are looked for. */
const RECLAIM_DELAY_MS = 1000;
const REASONS_KEPT = 50;


function fixedDelayOf(opts: StoredOptions | undefined): number {
  const backoff = opts?.backoff;
  const delay = typeof backoff === 'number' ? backoff : backoff?.delay;
  return typeof delay === 'number' && delay >= 0 ? delay : 0;
}

function unavailable(): BusError {
  return new BusError('UNAVAILABLE', 'the queue store (Redis) is unreachable: nothing was changed');
}

interface QueueRuntime {
  name: string;
  queue: Queue<unknown, unknown, string>;
  worker: Worker<unknown, unknown, string> | null;
  /** getNextJob calls in flight. */
  fetching: number;
  /** The last fetch found nothing: fetch one at a time (a blocking wait) until tasks flow. */
  idle: boolean;
  renewing: boolean;
}

/**
 * Durable work queues on BullMQ, one BullMQ queue per name. Tasks are
 * stored before their receipt; connections pull with credits and hold
 * leases (BullMQ locks the gateway renews) until they ack or fail; a
 * connection that goes away gives its tasks back at once as a failed
 * attempt; a gateway that dies gives them back when the locks expire.
 */
export class QueueService {
  private readonly runtimes = new Map<string, QueueRuntime>();
  private readonly ledger = new CreditLedger();
  private readonly leases = new LeaseTable<TaskJob>();
  private readonly foreign: ForeignSettlements;
  /** Settlements (ack, fail, give-backs) in flight: close() waits for them. */
  private readonly pending = new Set<Promise<unknown>>();
  private readonly fetches = new Set<Promise<void>>();
  /** Lock tokens with a fetch, ack, fail or give-back in flight: their tasks are accounted for. */
  private readonly busyTokens = new Set<string>();
  private reclaimTimer: NodeJS.Timeout | undefined;
  private readonly renewTimer: NodeJS.Timeout;
  private tokenSeq = 0;
  private closing = false;

  constructor(private readonly options: QueueServiceOptions) {
    this.foreign = new ForeignSettlements({
      connection: options.workerConnection, createConnection: options.createEventConnection,
      prefix: options.prefix, log: options.log, onOutcome: options.onOutcome,
    });
    this.renewTimer = setInterval(() => this.renewLeases(), Math.max(100, Math.floor(options.leaseMs / 2)));
    this.renewTimer.unref();
  }

  /**
   * Starts the stalled check of every queue with active tasks, so that the
   * tasks a crashed gateway held come back even if no one pulls them yet.
   * Runs now, or when Redis first answers.
   */
  start(): void {
    const recover = () => {
      this.recoverActiveQueues().catch((err: unknown) => {
        this.options.log.warn({ err }, 'queues: could not look for tasks left active by an earlier run');
      });
    };
    if (this.options.queueConnection.status === 'ready') recover();
    else this.options.queueConnection.once('ready', recover);
    // A fetch whose reply a Redis restart lost is sent again by ioredis and
    // brings another task: the first stays locked with this gateway's token
    // and no one holds it. Such orphans go back at once, not after their lease.
    this.options.workerConnection.on('ready', () => {
      clearTimeout(this.reclaimTimer);
      this.reclaimTimer = setTimeout(() => {
        this.reclaimOrphans().catch((err: unknown) => {
          this.options.log.warn({ err }, 'queues: could not look for orphaned tasks; they return when their leases expire');
        });
      }, RECLAIM_DELAY_MS);
      this.reclaimTimer.unref();
    });
  }

  get leasedCount(): number {
    return this.leases.size;
  }

  /** Stores a task; resolves with its id only once Redis has it. */
  async enqueue(name: string, payload: unknown, options: TaskOptions = {}): Promise<string> {
    if (this.closing) throw new BusError('UNAVAILABLE', 'the gateway is shutting down: the task was not stored');
    const runtime = this.runtime(name);
    const policy = this.policyOf(name);
    const opts: StoredOptions = {
      jobId: options.jobId ?? randomUUID(),
      attempts: options.attempts ?? policy.attempts,
      backoff: options.backoff ?? policy.backoff,
      removeOnComplete: this.options.keepCompleted === 0 ? true : { count: this.options.keepCompleted },
      removeOnFail: false,
      stackTraceLimit: REASONS_KEPT,
    };
    if (options.priority) opts.priority = options.priority;
    if (options.delay) opts.delay = options.delay;
    if (options.replyTo) opts.replyTo = options.replyTo;
    const job = await this.store(() => runtime.queue.add(name, payload, opts));
    return job.id as string;
  }

  /** One credit: the next task of `name` goes to this consumer, now or when one arrives. */
  pull(consumer: TaskConsumer, name: string, pullId: PullId): void {
    if (this.closing) throw new BusError('UNAVAILABLE', 'the gateway is shutting down');
    const runtime = this.runtime(name);
    this.ledger.grant(name, consumer, pullId);
    this.pump(runtime);
  }

  async ack(consumer: TaskConsumer, taskId: string, result: unknown): Promise<void> {
    const lease = this.takeLease(consumer, taskId);
    const runtime = this.runtime(lease.queue);
    await this.settle(lease, async () => {
      // While pulls wait, the completion also fetches the next task, under the
      // same lock token, as BullMQ's own Worker does: one Redis command a task
      // instead of two. It counts as a fetch in flight meanwhile.
      const fetchNext = this.wantsTasks(runtime);
      if (fetchNext) runtime.fetching++;
      let next: TaskJob | undefined;
      try {
        this.foreign.expect(lease.queue, taskId);
        const reply = await lease.job.moveToCompleted(result ?? null, lease.token, fetchNext);
        next = runtime.worker ? nextJobOf(runtime.worker, reply, lease.token) : undefined;
      } catch (err) {
        // The command may have run with its reply lost to a Redis restart
        // (then a resent one finds no lock): if the task is done, so is the ack.
        // A task that lost reply fetched is an orphan reclaimOrphans returns.
        if (!(await lease.job.isCompleted().catch(() => false))) {
          this.foreign.unexpect(lease.queue, taskId);
          throw err;
        }
      } finally {
        if (fetchNext) {
          runtime.fetching--;
          this.fetched(runtime, next, lease.token);
        }
      }
      this.options.onOutcome({
        kind: 'completed', queue: lease.queue, taskId, attempts: lease.job.attemptsStarted,
        result: result ?? null, replyTo: replyToOf(lease.job), source: consumer.label,
      });
    });
  }

  async fail(consumer: TaskConsumer, taskId: string, reason: string): Promise<void> {
    const lease = this.takeLease(consumer, taskId);
    await this.settle(lease, async () => {
      try {
        await this.failAttempt(lease.job, lease.token, lease.queue, reason, { source: consumer.label });
      } catch (err) {
        // As for ack: a resent command finds the task no longer active when
        // the first one ran; either way it is out of this worker's hands.
        if ((await lease.job.getState().catch(() => 'active')) === 'active') throw err;
      }
    });
  }

  /**
   * A connection went away: its credits end and its tasks go back to their
   * queues at once, each as a failed attempt (`worker disconnected`).
   */
  release(consumerId: string, reason = 'worker disconnected'): void {
    this.ledger.drop(consumerId);
    for (const lease of this.leases.takeAll(consumerId)) {
      const giveBack = () => this.failAttempt(lease.job, lease.token, lease.queue, reason, { immediate: true });
      this.track(this.withToken(lease.token, giveBack).catch((err: unknown) => {
        if (isLostLease(err)) return;
        this.options.log.error({ err, queue: lease.queue, taskId: lease.taskId }, 'queues: could not return a task; it returns when its lease expires');
      }));
    }
  }

  /** The queues known, those `visible` says the caller may see. */
  async listQueues(visible: (name: string) => boolean = () => true): Promise<QueueSummary[]> {
    const names = (await this.store(() => this.queueNames())).filter(visible);
    return Promise.all(names.map((name) => this.summary(name)));
  }

  async describeQueue(name: string, page: { offset: number; limit: number }): Promise<QueueDetail> {
    const tasks = {} as Record<TaskState, TaskView[]>;
    for (const state of TASK_STATES) tasks[state] = [];
    const runtime = await this.knownRuntime(name);
    if (!runtime) {
      const counts = Object.fromEntries(TASK_STATES.map((state) => [state, 0])) as QueueCounts;
      return { name, counts, paused: false, pullers: [], tasks };
    }
    const summary = await this.summary(name);
    await this.store(() => Promise.all(TASK_STATES.map(async (state) => {
      const types: JobType[] = state === 'waiting' ? ['wait', 'prioritized'] : [state];
      const jobs = await runtime.queue.getJobs(types, page.offset, page.offset + page.limit - 1, true);
      tasks[state] = jobs.slice(0, page.limit).map((job) => this.view(job as TaskJob, state));
    })));
    return { ...summary, tasks };
  }

  async getTask(name: string, taskId: string): Promise<TaskView> {
    const runtime = await this.knownRuntime(name);
    const job = runtime && await this.store(() => runtime.queue.getJob(taskId));
    if (!job) throw new BusError('UNKNOWN_TASK', `no task ${taskId} in queue ${name}`);
    const state = await this.store(() => job.getState());
    return this.view(job as TaskJob, this.stateOf(state));
  }

  /**
   * Sends a dead (failed) or completed task through again with a fresh
   * set of attempts; a delayed task (waiting out its backoff) runs now.
   */
  async retry(name: string, taskId: string): Promise<TaskState> {
    const runtime = await this.knownRuntime(name);
    const job = runtime && await this.store(() => runtime.queue.getJob(taskId)) as TaskJob | undefined;
    if (!job) throw new BusError('UNKNOWN_TASK', `no task ${taskId} in queue ${name}`);
    const state = this.stateOf(await this.store(() => job.getState()));
    if (state === 'failed' || state === 'completed') {
      await this.store(() => job.retry(state, { resetAttemptsMade: true, resetAttemptsStarted: true }));
    } else if (state === 'delayed') {
      await this.store(() => job.promote());
    } else {
      throw new TaskStateError(state, `task ${taskId} is ${state}: only failed, completed or delayed tasks can be retried`);
    }
    return state;
  }

  async remove(name: string, taskId: string): Promise<void> {
    const runtime = await this.knownRuntime(name);
    const job = runtime && await this.store(() => runtime.queue.getJob(taskId));
    if (!runtime || !job) throw new BusError('UNKNOWN_TASK', `no task ${taskId} in queue ${name}`);
    const removed = await this.store(() => runtime.queue.remove(taskId));
    if (!removed) throw new TaskStateError('active', `task ${taskId} is being worked on: ack, fail or disconnect first`);
  }

  async pause(name: string): Promise<void> {
    const runtime = this.runtime(name);
    await this.store(() => runtime.queue.pause());
  }

  async resume(name: string): Promise<void> {
    const runtime = this.runtime(name);
    await this.store(() => runtime.queue.resume());
  }

  /** Gives back every task still leased, then closes the BullMQ queues and workers. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.renewTimer);
    clearTimeout(this.reclaimTimer);
    await Promise.allSettled([...this.pending]);
    for (const consumerId of this.leases.consumers()) this.release(consumerId, 'gateway shutting down');
    await Promise.allSettled([...this.pending]);
    const runtimes = [...this.runtimes.values()];
    // Closing the workers interrupts their blocking waits; a fetch that still
    // brings a task gives it back (see fetchOne).
    await Promise.allSettled(runtimes.map((r) => r.worker?.close(true)));
    await Promise.allSettled([...this.fetches]);
    await Promise.allSettled([...this.pending]);
    await Promise.allSettled(runtimes.map((r) => r.queue.close()));
    this.foreign.close();
  }

  /** The runtime of a queue that exists (used since start, or known to Redis); null otherwise. */
  private async knownRuntime(name: string): Promise<QueueRuntime | null> {
    const existing = this.runtimes.get(name);
    if (existing) return existing;
    const exists = await this.store(() => this.options.queueConnection.exists(metaKey(this.options.prefix, name)));
    return exists ? this.runtime(name) : null;
  }

  private runtime(name: string): QueueRuntime {
    let runtime = this.runtimes.get(name);
    if (!runtime) {
      const queue = new Queue<unknown, unknown, string>(name, {
        connection: this.options.queueConnection,
        prefix: this.options.prefix,
        skipVersionCheck: true,
      });
      queue.on('error', (err: Error) => this.options.log.debug({ err: err.message, queue: name }, 'queues: redis error'));
      runtime = { name, queue, worker: null, fetching: 0, idle: true, renewing: false };
      this.runtimes.set(name, runtime);
      this.foreign.watch(queue);
    }
    return runtime;
  }

  /** BullMQ workers are created on first pull: each holds a blocking Redis connection. */
  private workerOf(runtime: QueueRuntime): Worker<unknown, unknown, string> {
    if (runtime.worker) return runtime.worker;
    const worker = new Worker<unknown, unknown, string>(runtime.name, null, {
      connection: this.options.workerConnection,
      prefix: this.options.prefix,
      lockDuration: this.options.leaseMs,
      stalledInterval: this.options.stalledCheckMs,
      // Deliveries are counted against each task's own attempts (deliver()).
      maxStalledCount: MAX_ATTEMPTS,
      // Recorded on each job it fetches: a settlement by this name is a gateway's own (foreign-settlements.ts).
      name: GATEWAY_WORKER_NAME,
      // A producer's own backoff strategy is unknown here: its delay is taken as fixed.
      settings: { backoffStrategy: (_attempts: number, _type?: string, _err?: Error, job?: { opts: StoredOptions }) => fixedDelayOf(job?.opts) },
      drainDelay: DRAIN_DELAY_S,
      autorun: false,
      skipVersionCheck: true,
    });
    worker.on('error', (err: Error) => this.options.log.debug({ err: err.message, queue: runtime.name }, 'queues: worker redis error'));
    worker.on('stalled', (taskId: string) => {
      this.options.log.warn({ queue: runtime.name, taskId }, 'queues: task returned after its lease expired');
    });
    // Manual processing starts neither the stalled check nor lock renewal: the
    // stalled check returns tasks a crashed gateway held; leases are renewed here.
    void worker.startStalledCheckTimer();
    runtime.worker = worker;
    return worker;
  }

  private pump(runtime: QueueRuntime): void {
    if (this.closing) return;
    const credits = this.ledger.credits(runtime.name);
    const limit = runtime.idle ? 1 : Math.min(MAX_PARALLEL_FETCHES, credits);
    while (runtime.fetching < limit && runtime.fetching < credits) {
      runtime.fetching++;
      const fetch = this.fetchOne(runtime);
      this.fetches.add(fetch);
      void fetch.finally(() => this.fetches.delete(fetch));
    }
  }

  private async fetchOne(runtime: QueueRuntime): Promise<void> {
    const worker = this.workerOf(runtime);
    const token = `${worker.id}:${++this.tokenSeq}`;
    this.busyTokens.add(token);
    let job: TaskJob | undefined;
    try {
      job = await worker.getNextJob(token);
    } catch (err) {
      if (!this.closing) {
        this.options.log.warn({ err, queue: runtime.name }, 'queues: fetching a task failed; retrying');
        await delay(FETCH_RETRY_MS);
      }
    }
    this.busyTokens.delete(token);
    runtime.fetching--;
    this.fetched(runtime, job, token);
  }

  /** Pulls wait for more tasks than fetches in flight will bring. */
  private wantsTasks(runtime: QueueRuntime): boolean {
    return !this.closing && !runtime.idle && runtime.fetching < this.ledger.credits(runtime.name);
  }

  /** A fetch ended: its task (if any) goes to the next credit, and fetching goes on while pulls wait. */
  private fetched(runtime: QueueRuntime, job: TaskJob | undefined, token: string): void {
    runtime.idle = !job;
    if (job) {
      if (this.closing) this.track(this.giveBack(runtime, job, token));
      else this.deliver(runtime, job, token);
    }
    this.pump(runtime);
  }

  private deliver(runtime: QueueRuntime, job: TaskJob, token: string): void {
    const maxAttempts = maxAttemptsOf(job.opts);
    if (job.deferredFailure || job.attemptsStarted > maxAttempts) {
      // It went out `maxAttempts` times and never came back: the gateway
      // stopped each time while a worker had it.
      const reason = `no ack or fail after ${maxAttempts} ${maxAttempts === 1 ? 'delivery' : 'deliveries'}: attempts spent`;
      this.track(this.withToken(token, async () => {
        await uncountDelivery(this.options.workerConnection, runtime.queue, job, token);
        await this.failAttempt(job, token, runtime.name, reason, { final: true, attempts: job.attemptsStarted - 1 });
      }).catch((err: unknown) => {
          this.options.log.error({ err, queue: runtime.name, taskId: job.id }, 'queues: could not dead-letter a task');
        }));
      return;
    }
    const credit = this.ledger.take(runtime.name);
    if (!credit) {
      this.track(this.giveBack(runtime, job, token));
      return;
    }
    const lease: Lease<TaskJob> = {
      consumer: credit.consumer, queue: runtime.name, taskId: job.id as string, job, token, deliveredAt: Date.now(),
    };
    this.leases.add(lease);
    const task: TaskFrame = {
      id: job.id as string,
      queue: runtime.name,
      payload: job.data === undefined ? null : job.data,
      createdAt: new Date(job.timestamp).toISOString(),
      attempts: job.attemptsStarted,
    };
    credit.consumer.send(credit.pullId === undefined ? { task } : { task, id: credit.pullId });
  }

  private async giveBack(runtime: QueueRuntime, job: TaskJob, token: string): Promise<void> {
    try {
      await this.withToken(token, async () => {
        await uncountDelivery(this.options.workerConnection, runtime.queue, job, token);
        await job.moveToWait(token);
      });
    } catch (err) {
      this.options.log.warn({ err, queue: runtime.name, taskId: job.id }, 'queues: could not give back an undelivered task; it returns when its lease expires');
    }
  }

  /**
   * Ends one attempt as failed: retried with backoff (at once when its
   * worker disconnected) until its attempts are spent, then dead.
   */
  private async failAttempt(job: TaskJob, token: string, queue: string, reason: string, how: {
    /** Retry without backoff (its worker disconnected; the task did not fail). */
    immediate?: boolean;
    /** Dead whatever attempts are left. */
    final?: boolean;
    attempts?: number;
    source?: string;
  }): Promise<void> {
    const dead = how.final === true || job.attemptsMade + 1 >= maxAttemptsOf(job.opts);
    if (how.immediate) dropBackoff(job);
    if (dead) this.foreign.expect(queue, job.id as string);
    try {
      await job.moveToFailed(attemptFailure(reason, how.final), token, false);
    } catch (err) {
      this.foreign.unexpect(queue, job.id as string);
      throw err;
    }
    this.options.onOutcome({
      kind: dead ? 'dead' : 'failed', queue, taskId: job.id as string, attempts: how.attempts ?? job.attemptsStarted,
      reason, replyTo: replyToOf(job), source: how.source ?? GATEWAY_SOURCE,
    });
  }

  private takeLease(consumer: TaskConsumer, taskId: string): Lease<TaskJob> {
    const lease = this.leases.take(consumer.id, taskId);
    if (!lease) throw new BusError('UNKNOWN_TASK', `task ${taskId} is not held by this connection`);
    return lease;
  }

  /** Runs an ack or fail; a lost lease is UNKNOWN_TASK, a Redis error UNAVAILABLE (the lease stays). */
  private async settle(lease: Lease<TaskJob>, action: () => Promise<void>): Promise<void> {
    const run = this.withToken(lease.token, action);
    this.track(run.catch(() => undefined));
    try {
      await run;
    } catch (err) {
      if (isLostLease(err)) {
        throw new BusError('UNKNOWN_TASK', `the lease on task ${lease.taskId} expired and it went back to its queue`);
      }
      this.options.log.error({ err, queue: lease.queue, taskId: lease.taskId }, 'queues: ack/fail failed');
      if (lease.consumer.closing || this.closing) this.release(lease.consumer.id);
      else this.leases.add(lease);
      throw unavailable();
    }
  }

  private async withToken<T>(token: string, action: () => Promise<T>): Promise<T> {
    this.busyTokens.add(token);
    try {
      return await action();
    } finally {
      this.busyTokens.delete(token);
    }
  }

  private track(promise: Promise<unknown>): void {
    this.pending.add(promise);
    void promise.finally(() => this.pending.delete(promise));
  }

  /** Keeps the locks of leased tasks alive; a lock found lost ends its lease. */
  private renewLeases(): void {
    for (const name of this.leases.queues()) {
      const runtime = this.runtimes.get(name);
      const worker = runtime?.worker;
      if (!runtime || !worker || runtime.renewing) continue;
      const leases = this.leases.inQueue(name);
      runtime.renewing = true;
      worker.extendJobLocks(leases.map((l) => l.taskId), leases.map((l) => l.token), this.options.leaseMs)
        .then((lostIds) => {
          const lost = new Set(lostIds);
          for (const lease of leases) {
            if (!lost.has(lease.taskId) || !this.leases.remove(lease)) continue;
            this.options.log.warn({ queue: name, taskId: lease.taskId, clientId: lease.consumer.id }, 'queues: lease lost; the task went back to its queue');
          }
        }, (err: unknown) => {
          this.options.log.warn({ err, queue: name }, 'queues: renewing leases failed');
        })
        .finally(() => {
          runtime.renewing = false;
        });
    }
  }

  /** Runs a Redis operation through the fail-fast connection; anything but a BusError becomes UNAVAILABLE. */
  private async store<T>(operation: () => Promise<T>): Promise<T> {
    if (this.options.queueConnection.status !== 'ready') throw unavailable();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(unavailable()), this.options.storeTimeoutMs);
    });
    try {
      return await Promise.race([operation(), timeout]);
    } catch (err) {
      if (err instanceof BusError || err instanceof TaskStateError) throw err;
      // JSON.stringify's stack overflow on a deeply nested task: the task's fault, not Redis's.
      if (err instanceof RangeError) throw new BusError('INVALID_FRAME', `the task cannot be stored as JSON: ${err.message}`);
      this.options.log.warn({ err }, 'queues: redis operation failed');
      throw unavailable();
    } finally {
      clearTimeout(timer);
    }
  }

  private policyOf(name: string): RetryPolicy {
    const override = this.options.overrides[name];
    return {
      attempts: override?.attempts ?? this.options.defaults.attempts,
      backoff: override?.backoff ?? this.options.defaults.backoff,
    };
  }

  /** Queues known to Redis (they have a meta key) and those used since start. */
  private async queueNames(): Promise<string[]> {
    const names = new Set(this.runtimes.keys());
    let cursor = '0';
    do {
      const [next, keys] = await this.options.queueConnection.scan(cursor, 'MATCH', metaPattern(this.options.prefix), 'COUNT', 1000);
      cursor = next;
      for (const key of keys) names.add(queueNameOfMetaKey(this.options.prefix, key));
    } while (cursor !== '0');
    return [...names].sort();
  }

  /**
   * Gives back the active tasks locked with one of this gateway's tokens
   * that no lease and no fetch in flight accounts for.
   */
  private async reclaimOrphans(): Promise<void> {
    const connection = this.options.workerConnection;
    for (const runtime of [...this.runtimes.values()]) {
      const worker = runtime.worker;
      if (!worker || this.closing) continue;
      const locks = await activeLocks(connection, runtime.queue);
      const accountedFor = (token: string) => this.busyTokens.has(token)
        || this.leases.inQueue(runtime.name).some((lease) => lease.token === token);
      for (const { id, token } of locks) {
        if (!token?.startsWith(`${worker.id}:`) || accountedFor(token)) continue;
        const job = await runtime.queue.getJob(id) as TaskJob | undefined;
        // Checked again after the await: a lease or settlement may have begun.
        if (!job || accountedFor(token)) continue;
        this.options.log.warn({ queue: runtime.name, taskId: id }, 'queues: a task fetched as Redis went down reached no one: giving it back');
        await this.giveBack(runtime, job, token);
      }
    }
  }

  private async recoverActiveQueues(): Promise<void> {
    for (const name of await this.queueNames()) {
      const runtime = this.runtime(name);
      if (runtime.worker) continue;
      const active = await runtime.queue.getActiveCount();
      if (active > 0) {
        this.options.log.info({ queue: name, active }, 'queues: tasks left active by an earlier run return when their leases expire');
        this.workerOf(runtime);
      }
    }
  }

  private async summary(name: string): Promise<QueueSummary> {
    const runtime = this.runtime(name);
    const [raw, paused] = await this.store(() => Promise.all([
      runtime.queue.getJobCounts('wait', 'prioritized', 'active', 'delayed', 'completed', 'failed'),
      runtime.queue.isPaused(),
    ]));
    const counts: QueueCounts = {
      waiting: (raw.wait ?? 0) + (raw.prioritized ?? 0),
      active: raw.active ?? 0,
      delayed: raw.delayed ?? 0,
      completed: raw.completed ?? 0,
      failed: raw.failed ?? 0,
    };
    return { name, counts, paused, pullers: this.pullersOf(name) };
  }

  private pullersOf(name: string): PullerView[] {
    const views = new Map<string, PullerView>();
    for (const { consumer, credits } of this.ledger.pullers(name)) {
      views.set(consumer.id, { clientId: consumer.id, name: consumer.label, credits, leased: 0 });
    }
    for (const lease of this.leases.inQueue(name)) {
      const view = views.get(lease.consumer.id)
        ?? { clientId: lease.consumer.id, name: lease.consumer.label, credits: 0, leased: 0 };
      view.leased++;
      views.set(lease.consumer.id, view);
    }
    return [...views.values()];
  }

  private stateOf(state: string): TaskState | 'unknown' {
    if (state === 'wait' || state === 'waiting' || state === 'prioritized' || state === 'paused') return 'waiting';
    return (TASK_STATES as readonly string[]).includes(state) ? state as TaskState : 'unknown';
  }

  private view(job: TaskJob, state: TaskState | 'unknown'): TaskView {
    return {
      id: job.id as string,
      queue: job.queueName,
      payload: job.data === undefined ? null : job.data,
      createdAt: new Date(job.timestamp).toISOString(),
      attempts: job.attemptsStarted,
      state,
      maxAttempts: maxAttemptsOf(job.opts),
      priority: job.priority ?? 0,
      replyTo: replyToOf(job) ?? null,
      finishedAt: job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
      result: job.returnvalue ?? null,
      reasons: job.stacktrace ?? [],
      failedReason: job.failedReason ?? null,
    };
  }
}
