import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import {
  activeLocks, moveStalledToWait, nextJobOf, type JobHost, type TaskJob, type TaskQueue,
} from './bullmq-adapter.js';
import { CompletionBatch } from './completion-batch.js';
import { CreditLedger, type Credit, type PullId, type TaskConsumer } from './credit-ledger.js';
import { EnqueueBatch } from './enqueue-batch.js';
import type { Lease, LeaseTable } from './lease-table.js';
import type { QueueFetcher } from './queue-fetcher.js';
import type { QueueLogger } from './queue-logger.js';
import { revokeFrame, type RevokeReason, type TaskFrame } from './queue-types.js';
import { fetchedTaskOf, type FetchedTask } from './stored-task.js';
import type { TaskReturns } from './task-returns.js';
import type { WorkInFlight } from './work-in-flight.js';

/** Fetches in flight per queue once tasks are flowing (one while the queue is idle). */
const MAX_PARALLEL_FETCHES = 16;
const FETCH_RETRY_MS = 1000;

/** What every live queue uses of the gateway: one object, shared by all of them. */
export interface GatewayParts {
  /** Retries forever: the queue's own scripts beside BullMQ's. */
  readonly workerConnection: Redis;
  readonly log: QueueLogger;
  readonly work: WorkInFlight;
  /** Every queue's leases by holder: `ack` names a task by id only. */
  readonly holders: LeaseTable<TaskJob>;
  readonly returns: TaskReturns;
  /** A fetcher for the queue, on the gateway's shared connections. */
  newFetcher(queue: TaskQueue): QueueFetcher;
  /** A lease held past its timeout, already revoked: its attempt fails (Settlement). */
  timedOut(lease: Lease<TaskJob>): void;
  onDelivered?(queue: string, waitMs: number, traceparent: string | undefined): void;
}

/**
 * One queue name, live on this gateway: its BullMQ queue (the adapter is
 * its only way to Redis), its waiting pulls, the tasks it has out on
 * lease, and its fetch loop: credits → fetch (the job locked with a token
 * of its own) → lease → `{"task": …}` frame. Fetches run while pulls wait,
 * one at a time while the queue is empty (a blocking wait), up to
 * MAX_PARALLEL_FETCHES once tasks flow. A fetched task nobody can take
 * goes back uncounted.
 */
export class LiveQueue {
  readonly pulls = new CreditLedger();
  /** When it was last used (Date.now()): idle ones are evicted. */
  lastUsed = Date.now();
  /** Created on first pull; it shares the gateway's connections. */
  private fetcher: QueueFetcher | null = null;
  /** Made with the first lease, dropped with the last. */
  private leases: Set<Lease<TaskJob>> | undefined;
  /** getNextJob calls in flight. */
  private fetching = 0;
  /** The last fetch found nothing: fetch one at a time (a blocking wait) until tasks flow. */
  private idle = true;
  private renewing = false;
  /** The completions waiting for this tick's flush to say whether they fetch; null: no flush queued. */
  private completions: ((fetchNext: boolean) => void)[] | null = null;
  private completionBatch: CompletionBatch | null = null;
  /** This tick's enqueues go in one Redis call. */
  readonly enqueues: EnqueueBatch;

  constructor(readonly name: string, readonly queue: TaskQueue, private readonly gateway: GatewayParts) {
    this.enqueues = new EnqueueBatch(queue, () => this.fetcher?.fetchBehind());
  }

  /** Nothing waits on it, holds from it or runs for it, and it was not used since `before`. */
  idleSince(before: number): boolean {
    return this.lastUsed <= before && this.fetching === 0 && !this.renewing && this.pulls.credits === 0 && this.leases === undefined;
  }

  get hasFetcher(): boolean {
    return this.fetcher !== null;
  }

  /** Its fetcher, created now if it has none: from then on its stalled check runs. */
  ensureFetcher(): QueueFetcher {
    this.fetcher ??= this.gateway.newFetcher(this.queue);
    return this.fetcher;
  }

  /** One credit: the next task goes to this consumer, now or when one arrives. */
  pull(consumer: TaskConsumer, pullId: PullId): void {
    this.pulls.grant(consumer, pullId);
    this.flushThisTick();
  }

  /**
   * Acks a held task (already out of the lease tables). While pulls wait,
   * the completion also fetches the next task under the same lock token, as
   * BullMQ's own Worker does: one Redis command a task instead of two. It
   * counts as a fetch in flight meanwhile, decided with the rest of this
   * tick's acks and pulls (a worker's `ack` and its next `pull` usually
   * come in one read, and the pull's credit is counted first).
   */
  async complete(lease: Lease<TaskJob>, result: unknown): Promise<void> {
    this.lastUsed = Date.now();
    const fetchNext = await new Promise<boolean>((resolve) => this.flushThisTick().push(resolve));
    // The task it fetches is accounted for under the token until it is leased or returned.
    if (fetchNext) this.gateway.work.busy(lease.token);
    let next: TaskJob | undefined;
    try {
      const { fetcher } = this;
      const reply = fetcher
        ? await this.completionsOf(fetcher.host).complete({ job: lease.job, result, token: lease.token, fetchNext })
        : await lease.job.moveToCompleted(result, lease.token, fetchNext);
      if (fetcher && fetchNext) {
        const fetched = nextJobOf(fetcher.host, reply, lease.token);
        fetcher.drainedAfter(fetched);
        next = fetched.job;
      }
    } catch (err) {
      // The command may have run with its reply lost to a Redis restart
      // (then a resent one finds no lock): if the task is done, so is the ack.
      // A task that lost reply fetched is an orphan recovery returns.
      if (!(await lease.job.isCompleted().catch(() => false))) throw err;
    } finally {
      if (fetchNext) {
        this.fetching--;
        this.fetched(lease.token, next && fetchedTaskOf(next, lease.token, this.name, Date.now()));
      }
    }
  }

  /** This tick's acks go in one Redis call, through the host its tasks were fetched by. */
  private completionsOf(host: JobHost): CompletionBatch {
    if (this.completionBatch?.host !== host) this.completionBatch = new CompletionBatch(host);
    return this.completionBatch;
  }

  /** The completions of the flush queued for this tick, queued now if none is. */
  private flushThisTick(): ((fetchNext: boolean) => void)[] {
    if (this.completions === null) {
      this.completions = [];
      queueMicrotask(() => this.flush());
    }
    return this.completions;
  }

  /** Starts as many fetches as the credits call for. */
  private flush(): void {
    const completions = this.completions ?? [];
    this.completions = null;
    const { work } = this.gateway;
    for (const decide of completions) {
      // Pulls wait for more tasks than fetches in flight will bring.
      const fetchNext = !work.closing && !this.idle && this.fetching < this.pulls.credits;
      if (fetchNext) this.fetching++;
      decide(fetchNext);
    }
    if (work.closing) return;
    const { credits } = this.pulls;
    const limit = this.idle ? 1 : Math.min(MAX_PARALLEL_FETCHES, credits);
    while (this.fetching < limit && this.fetching < credits) {
      this.fetching++;
      void this.fetchOne();
    }
  }

  private async fetchOne(): Promise<void> {
    const { work, log, returns } = this.gateway;
    work.fetchStarted();
    try {
      const fetcher = this.ensureFetcher();
      const token = work.newToken();
      let job: TaskJob | undefined;
      try {
        job = await fetcher.getNextJob(token);
      } catch (err) {
        if (!work.closing) {
          const setAside = await returns.afterFetchError(this.queue, token, err).catch(() => false);
          if (!setAside) {
            log.warn({ err, queue: this.name }, 'queues: fetching a task failed; retrying');
            await delay(FETCH_RETRY_MS);
          }
        }
      }
      this.fetching--;
      this.fetched(token, job && fetchedTaskOf(job, token, this.name, Date.now()));
    } finally {
      work.fetchEnded();
    }
  }

  /**
   * A fetch under `token` ended with its task (if any) read once: the task
   * goes to the next credit, or back (TaskReturns) when it cannot; fetching
   * goes on while pulls wait. The token stays busy until the task is leased
   * (the lease accounts for it then) or returned.
   */
  private fetched(token: string, fetched: FetchedTask | undefined): void {
    const { work, returns } = this.gateway;
    this.idle = !fetched;
    const credit = fetched?.kind === 'deliverable' && !work.closing ? this.pulls.take() : null;
    const returned = fetched?.kind === 'deliverable' && credit ? this.deliver(fetched, credit) : fetched;
    if (returned) returns.end(this.queue, returned);
    else work.done(token);
    this.flushThisTick();
  }

  /** Leases the task to the credit's consumer; answers it undeliverable when that raised. */
  private deliver(fetched: FetchedTask & { kind: 'deliverable' }, credit: Credit): FetchedTask | undefined {
    const { job, token, facts, task } = fetched;
    const lease: Lease<TaskJob> = { consumer: credit.consumer, queue: this.name, taskId: task.id, job, token, facts, deliveredAt: Date.now() };
    try {
      this.hold(lease);
      this.armTimeout(lease, fetched.timeoutMs);
      credit.consumer.send(credit.pullId === undefined ? { task } : { task, id: credit.pullId });
      this.gateway.onDelivered?.(this.name, fetched.waitMs, task.traceparent);
      return undefined;
    } catch (err) {
      // A bug on this path; the fuzzer in test/ looks for them.
      this.gateway.log.error({ err, queue: this.name, taskId: task.id }, 'queues: delivering a task failed');
      this.drop(lease);
      return { ...fetched, kind: 'undeliverable', reason: `undeliverable: the gateway failed on it (${(err as Error).message})` };
    }
  }

  /**
   * Arms the attempt's timeout (`opts.timeout`, or the queue's): held
   * longer, the lease is revoked and the attempt fails with reason `timeout`
   * (retried while attempts remain).
   */
  private armTimeout(lease: Lease<TaskJob>, timeout: number | undefined): void {
    if (timeout === undefined) return;
    lease.timer = setTimeout(() => {
      if (this.revoke(lease, 'timeout')) this.gateway.timedOut(lease);
    }, timeout);
    lease.timer.unref();
  }

  /** Records a lease here and with its holder. */
  hold(lease: Lease<TaskJob>): void {
    (this.leases ??= new Set()).add(lease);
    this.gateway.holders.add(lease);
  }

  /** Ends a lease (its timeout too); false if it had ended already. */
  drop(lease: Lease<TaskJob>): boolean {
    if (!this.gateway.holders.remove(lease)) return false;
    clearTimeout(lease.timer);
    this.leases?.delete(lease);
    if (this.leases?.size === 0) this.leases = undefined;
    return true;
  }

  /** Ends a lease and tells its holder: its later ack, fail or progress of the task get UNKNOWN_TASK. */
  revoke(lease: Lease<TaskJob>, reason: RevokeReason): boolean {
    if (!this.drop(lease)) return false;
    if (!lease.consumer.closing) lease.consumer.send(revokeFrame(lease, reason));
    return true;
  }

  /** Who holds `taskId` here, if anyone. */
  holderOf(taskId: string): Lease<TaskJob> | undefined {
    for (const lease of this.leases ?? []) if (lease.taskId === taskId) return lease;
    return undefined;
  }

  heldLeases(): Lease<TaskJob>[] {
    return [...(this.leases ?? [])];
  }

  /**
   * Keeps the BullMQ locks of its leased tasks alive (manual processing
   * renews nothing by itself): one extendLocks for them all; a lock found
   * lost ends its lease (the task went back to its queue and its holder's
   * ack will be UNKNOWN_TASK).
   */
  renewLeases(leaseMs: number): void {
    const { fetcher, leases } = this;
    if (!fetcher || !leases || this.renewing) return;
    const held = [...leases];
    const { log } = this.gateway;
    this.renewing = true;
    // Called for every queue from one timer: a failure, even a synchronous one, is logged and the others renew.
    Promise.resolve().then(() => fetcher.extendJobLocks(held.map((l) => l.taskId), held.map((l) => l.token), leaseMs))
      .then((lostIds) => {
        const lost = new Set(lostIds);
        for (const lease of held) {
          if (!lost.has(lease.taskId) || !this.drop(lease)) continue;
          log.warn({ queue: this.name, taskId: lease.taskId, clientId: lease.consumer.id }, 'queues: lease lost; the task went back to its queue');
        }
      }, (err: unknown) => {
        log.warn({ err, queue: this.name }, 'queues: renewing leases failed');
      })
      .finally(() => {
        this.renewing = false;
      });
  }

  /** Tasks whose lease expired (a gateway died holding them) go back to wait; only once it has a fetcher. */
  checkStalled(): void {
    if (!this.fetcher) return;
    const { log } = this.gateway;
    // One catch for the check and its report: a timer's rejection would end the process.
    moveStalledToWait(this.fetcher.host).then((stalled) => {
      if (stalled.length > 0) log.warn({ queue: this.name, stalled }, 'queues: tasks returned after their lease expired');
    }).catch((err: unknown) => log.debug({ err: (err as Error).message, queue: this.name }, 'queues: stalled check failed'));
  }

  /** Gives back the active tasks locked with one of this gateway's tokens that no lease and no fetch in flight accounts for. */
  async reclaimOrphans(): Promise<void> {
    const { fetcher } = this;
    const { work } = this.gateway;
    if (!fetcher || work.closing) return;
    const locks = await activeLocks(this.gateway.workerConnection, this.queue);
    // A token holds one task at a time, but the resent fetch (and the
    // completions after it) go on with the orphan's token: the lease of
    // another task under it does not account for this one.
    const accountedFor = (token: string, id: string) => work.isBusy(token)
      || this.heldLeases().some((lease) => lease.token === token && lease.taskId === id);
    for (const { id, token } of locks) {
      if (!token?.startsWith(`${fetcher.id}:`) || accountedFor(token, id)) continue;
      const job = await this.queue.getJob(id) as TaskJob | undefined;
      // Checked again after the await: a lease or settlement may have begun.
      if (!job || accountedFor(token, id)) continue;
      this.gateway.log.warn({ queue: this.name, taskId: id }, 'queues: a task fetched as Redis went down reached no one: giving it back');
      await this.gateway.returns.giveBack(this.queue, job, token);
    }
  }

  /** Ends its fetcher's waits; a fetch that still brings a task gives it back. */
  stopFetching(): void {
    this.fetcher?.close();
  }
}
