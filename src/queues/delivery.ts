import { setTimeout as delay } from 'node:timers/promises';
import { deliveryFlaw, maxAttemptsOf, streamedOf, traceparentOf, uncountDelivery, type TaskJob } from './bullmq-adapter.js';
import type { QueueContext, QueueRuntime } from './queue-context.js';
import type { TaskFrame } from './queue-types.js';
import { failAttempt } from './attempt-failure.js';
import { armTimeout } from './task-control.js';
import { Undeliverable } from './undeliverable.js';

/** Fetches in flight per queue once tasks are flowing (one while the queue is idle). */
const MAX_PARALLEL_FETCHES = 16;
const FETCH_RETRY_MS = 1000;

/**
 * The pull path: credits → BullMQ fetch (the job locked with a token of
 * its own) → lease → `{"task": …}` frame. Fetches run while pulls wait,
 * one at a time while the queue is empty (a blocking wait), up to
 * MAX_PARALLEL_FETCHES once tasks flow. A fetched task nobody can take
 * goes back uncounted.
 */
export class Delivery {
  readonly fetches = new Set<Promise<void>>();
  private tokenSeq = 0;
  /** Queues with a flush queued for this tick, and the completions waiting for it to say whether they fetch. */
  private readonly flushes = new Map<QueueRuntime, ((fetchNext: boolean) => void)[]>();
  private readonly undeliverable: Undeliverable;

  constructor(private readonly ctx: QueueContext) {
    this.undeliverable = new Undeliverable(ctx);
  }

  /**
   * Starts as many fetches as the queue's credits call for, once per tick:
   * a worker's `ack` and its next `pull` usually come in one read, and the
   * ack can only fetch the next task (one Redis command instead of two)
   * if the pull's credit is counted first.
   */
  pump(runtime: QueueRuntime): void {
    this.flushOf(runtime);
  }

  /**
   * Whether a completion should also fetch the queue's next task, decided
   * with the rest of this tick's acks and pulls. A yes counts as a fetch in
   * flight: the caller hands its result to `fetched`.
   */
  completionFetches(runtime: QueueRuntime): Promise<boolean> {
    return new Promise((resolve) => {
      this.flushOf(runtime).push(resolve);
    });
  }

  /** The completions of the flush queued for this tick, queued now if none is. */
  private flushOf(runtime: QueueRuntime): ((fetchNext: boolean) => void)[] {
    let completions = this.flushes.get(runtime);
    if (!completions) {
      completions = [];
      this.flushes.set(runtime, completions);
      queueMicrotask(() => this.flush(runtime));
    }
    return completions;
  }

  private flush(runtime: QueueRuntime): void {
    const completions = this.flushes.get(runtime) ?? [];
    this.flushes.delete(runtime);
    for (const decide of completions) {
      const fetchNext = this.wantsTasks(runtime);
      if (fetchNext) runtime.fetching++;
      decide(fetchNext);
    }
    if (this.ctx.closing) return;
    const credits = this.ctx.ledger.credits(runtime.name);
    const limit = runtime.idle ? 1 : Math.min(MAX_PARALLEL_FETCHES, credits);
    while (runtime.fetching < limit && runtime.fetching < credits) {
      runtime.fetching++;
      const fetch = this.fetchOne(runtime);
      this.fetches.add(fetch);
      void fetch.finally(() => this.fetches.delete(fetch));
    }
  }

  /** Pulls wait for more tasks than fetches in flight will bring. */
  private wantsTasks(runtime: QueueRuntime): boolean {
    return !this.ctx.closing && !runtime.idle && runtime.fetching < this.ctx.ledger.credits(runtime.name);
  }

  /** A fetch ended: its task (if any) goes to the next credit, and fetching goes on while pulls wait. */
  fetched(runtime: QueueRuntime, job: TaskJob | undefined, token: string): void {
    runtime.idle = !job;
    if (job) {
      if (this.ctx.closing) this.ctx.track(this.giveBack(runtime, job, token));
      else this.deliver(runtime, job, token);
    }
    this.pump(runtime);
  }

  /** Puts a fetched task back at the head of its queue, its delivery uncounted. */
  async giveBack(runtime: QueueRuntime, job: TaskJob, token: string): Promise<void> {
    try {
      await this.ctx.withToken(token, async () => {
        await uncountDelivery(this.ctx.options.workerConnection, runtime.queue, job, token);
        await job.moveToWait(token);
      });
    } catch (err) {
      this.ctx.log.warn({ err, queue: runtime.name, taskId: job.id }, 'queues: could not give back an undelivered task; it returns when its lease expires');
    }
  }

  private async fetchOne(runtime: QueueRuntime): Promise<void> {
    const worker = this.ctx.fetcherOf(runtime);
    const token = `${worker.id}:${++this.tokenSeq}`;
    this.ctx.busyTokens.add(token);
    let job: TaskJob | undefined;
    try {
      job = await worker.getNextJob(token);
    } catch (err) {
      if (!this.ctx.closing) {
        const setAside = await this.undeliverable.afterFetchError(runtime, token, err).catch(() => false);
        if (!setAside) {
          this.ctx.log.warn({ err, queue: runtime.name }, 'queues: fetching a task failed; retrying');
          await delay(FETCH_RETRY_MS);
        }
      }
    }
    this.ctx.busyTokens.delete(token);
    runtime.fetching--;
    this.fetched(runtime, job, token);
  }

  /** Hands a fetched job to the next credit; one that cannot go out is set aside, and the loop goes on. */
  private deliver(runtime: QueueRuntime, job: TaskJob, token: string): void {
    const flaw = deliveryFlaw(job);
    if (flaw !== null) {
      this.undeliverable.setAside(runtime, job, token, flaw);
      return;
    }
    try {
      this.leaseAndSend(runtime, job, token);
    } catch (err) {
      // A bug on this path; the fuzzer in test/ looks for them.
      this.ctx.log.error({ err, queue: runtime.name, taskId: job.id }, 'queues: delivering a task failed');
      const lease = this.ctx.leases.holderOf(runtime.name, job.id as string);
      if (lease?.job === job) this.ctx.leases.remove(lease);
      this.undeliverable.setAside(runtime, job, token, `undeliverable: the gateway failed on it (${(err as Error).message})`);
    }
  }

  private leaseAndSend(runtime: QueueRuntime, job: TaskJob, token: string): void {
    const maxAttempts = maxAttemptsOf(job.opts);
    if (job.deferredFailure || job.attemptsStarted > maxAttempts) {
      // It went out `maxAttempts` times and never came back: the gateway
      // stopped each time while a worker had it.
      const reason = `no ack or fail after ${maxAttempts} ${maxAttempts === 1 ? 'delivery' : 'deliveries'}: attempts spent`;
      this.ctx.track(this.ctx.withToken(token, async () => {
        await uncountDelivery(this.ctx.options.workerConnection, runtime.queue, job, token);
        await failAttempt(this.ctx, job, token, runtime.name, reason, { final: true, attempts: job.attemptsStarted - 1 });
      }).catch((err: unknown) => {
        this.ctx.log.error({ err, queue: runtime.name, taskId: job.id }, 'queues: could not dead-letter a task');
      }));
      return;
    }
    const credit = this.ctx.ledger.take(runtime.name);
    if (!credit) {
      this.ctx.track(this.giveBack(runtime, job, token));
      return;
    }
    const lease = { consumer: credit.consumer, queue: runtime.name, taskId: job.id as string, job, token, deliveredAt: Date.now() };
    this.ctx.leases.add(lease);
    armTimeout(this.ctx, lease);
    const task: TaskFrame = {
      id: job.id as string,
      queue: runtime.name,
      payload: job.data === undefined ? null : job.data,
      createdAt: new Date(job.timestamp).toISOString(),
      attempts: job.attemptsStarted,
    };
    const traceparent = traceparentOf(job);
    if (traceparent !== undefined) task.traceparent = traceparent;
    if (streamedOf(job)) task.stream = true;
    credit.consumer.send(credit.pullId === undefined ? { task } : { task, id: credit.pullId });
    const delayMs = typeof job.opts.delay === 'number' && Number.isFinite(job.opts.delay) ? job.opts.delay : 0;
    this.ctx.options.onDelivered?.(runtime.name, lease.deliveredAt - job.timestamp - delayMs, traceparent);
  }
}
