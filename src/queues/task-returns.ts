import type { Redis } from 'ioredis';
import { jobLockedWith, repairUnreadable, storedJob, uncountDelivery, type TaskJob, type TaskQueue } from './bullmq-adapter.js';
import { failAttempt, type HeldTask } from './attempt-failure.js';
import type { QueueLogger } from './queue-logger.js';
import { factsOf, type FetchedTask } from './stored-task.js';
import type { TaskOutcome } from './task-outcome.js';
import type { WorkInFlight } from './work-in-flight.js';

export interface TaskReturnsOptions {
  workerConnection: Redis;
  log: QueueLogger;
  work: WorkInFlight;
  onOutcome(outcome: TaskOutcome): void;
  onUndeliverable?(queue: string): void;
}

/**
 * Fetched tasks that do not go to a worker, each ended here so the fetch
 * loop goes on serving the queue's other tasks and every other queue:
 * given back (no credit left, or the gateway closing), dead-lettered (its
 * attempts spent), or failed as undeliverable (its data or options
 * unreadable, its hash gone: counted and logged once, with a reason naming
 * the cause). Each runs with its lock token marked busy (recovery leaves
 * it alone) and is tracked: close() waits for it.
 */
export class TaskReturns {
  constructor(private readonly options: TaskReturnsOptions) {}

  /**
   * A fetched task no worker takes; a deliverable one (no credit left, or
   * the gateway closing) goes back. Its token, busy since its fetch, is
   * done once it is back or failed.
   */
  end(queue: TaskQueue, fetched: FetchedTask): void {
    const ending = this.endHeld(queue, fetched);
    this.options.work.track(ending);
  }

  /** Puts a task fetched under `token` back at the head of its queue (an orphan recovery found). */
  giveBack(queue: TaskQueue, job: TaskJob, token: string): Promise<void> {
    const { log, work } = this.options;
    const given = work.withToken(token, () => this.putBack(queue, job, token)).catch((err: unknown) => {
      log.warn({ err, queue: queue.name, taskId: job.id }, 'queues: could not give back an undelivered task; it returns when its lease expires');
    });
    work.track(given);
    return given;
  }

  /**
   * A fetch that raised may have moved a job to active before failing on it
   * (BullMQ could not read its hash): that job is found by its lock and set
   * aside. True when there was one.
   */
  async afterFetchError(queue: TaskQueue, token: string, err: unknown): Promise<boolean> {
    const id = await jobLockedWith(this.options.workerConnection, queue, token);
    if (id === null) return false;
    const reason = `undeliverable: BullMQ could not read it (${(err as Error).message})`;
    return this.options.work.withToken(token, () => this.setAside(queue, id, token, reason, undefined, true));
  }

  private async endHeld(queue: TaskQueue, fetched: FetchedTask): Promise<void> {
    const { work, log, workerConnection, onOutcome } = this.options;
    const { job, token } = fetched;
    try {
      if (fetched.kind === 'undeliverable' && !work.closing) {
        await this.setAside(queue, job.id as string, token, fetched.reason, fetched);
      } else if (fetched.kind === 'spent' && !work.closing) {
        // Its attempts were all spent while workers held it: failed for good, this delivery uncounted.
        await uncountDelivery(workerConnection, queue, job, token);
        await failAttempt(onOutcome, queue.name, fetched, fetched.reason, { final: true, attempts: fetched.attempts });
      } else {
        await this.putBack(queue, job, token);
      }
    } catch (err) {
      log.error({ err, queue: queue.name, taskId: job.id, kind: fetched.kind }, 'queues: could not return a fetched task; it returns when its lease expires');
    } finally {
      work.done(token);
    }
  }

  /** Back at the head of its queue, its delivery uncounted. */
  private async putBack(queue: TaskQueue, job: TaskJob, token: string): Promise<void> {
    await uncountDelivery(this.options.workerConnection, queue, job, token);
    await job.moveToWait(token);
  }

  /**
   * Fails the job as undeliverable. `onlyIfUnreadable`: a fetch that raised
   * for another reason than the job's own hash leaves the job alone (it
   * returns when its lease expires); false then.
   */
  private async setAside(queue: TaskQueue, id: string, token: string, reason: string, fetched?: HeldTask, onlyIfUnreadable = false): Promise<boolean> {
    const { workerConnection, log: logger } = this.options;
    const log = { queue: queue.name, taskId: id, reason };
    let failed = false;
    try {
      const repaired = await repairUnreadable(workerConnection, queue, id, token);
      if (onlyIfUnreadable && !('gone' in repaired) && repaired.fields.length === 0) return false;
      failed = true;
      this.options.onUndeliverable?.(queue.name);
      if ('gone' in repaired) {
        logger.warn(log, 'queues: a fetched task has no hash; taken out of the active list');
        return true;
      }
      const held = fetched !== undefined && repaired.fields.length === 0 ? fetched : await this.reread(queue, id, token);
      if (!held) return true;
      const why = repaired.fields.length === 0 ? reason : `${reason}; not JSON: ${repaired.fields.join(', ')} (kept as unreadable:FIELD)`;
      logger.warn({ ...log, reason: why }, 'queues: task failed as undeliverable');
      await failAttempt(this.options.onOutcome, queue.name, held, why, { final: true });
    } catch (err) {
      logger.error({ ...log, err }, 'queues: could not fail an undeliverable task; it returns when its lease expires');
    }
    // False when the repair itself failed: the fetch loop then waits before it retries.
    return failed;
  }

  /** The job as stored once its unreadable fields were repaired, held under `token`. */
  private async reread(queue: TaskQueue, id: string, token: string): Promise<HeldTask | undefined> {
    const job = await storedJob(queue, id);
    if (!job) return undefined;
    job.token = token;
    return { job, token, facts: factsOf(job) };
  }
}
