import type { Redis } from 'ioredis';
import { jobLockedWith, repairUnreadable, storedJob, uncountDelivery, type TaskJob, type TaskQueue } from './bullmq-adapter.js';
import { failAttempt } from './attempt-failure.js';
import type { QueueLogger } from './queue-logger.js';
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
 * the cause). What each does is tracked: close() waits for it.
 */
export class TaskReturns {
  constructor(private readonly options: TaskReturnsOptions) {}

  /** Puts a fetched task back at the head of its queue, its delivery uncounted. */
  giveBack(queue: TaskQueue, job: TaskJob, token: string): Promise<void> {
    const { workerConnection, log, work } = this.options;
    const given = work.withToken(token, async () => {
      await uncountDelivery(workerConnection, queue, job, token);
      await job.moveToWait(token);
    }).catch((err: unknown) => {
      log.warn({ err, queue: queue.name, taskId: job.id }, 'queues: could not give back an undelivered task; it returns when its lease expires');
    });
    work.track(given);
    return given;
  }

  /** A task whose attempts were all spent while workers held it: failed for good, this delivery uncounted. */
  deadLetter(queue: TaskQueue, job: TaskJob, token: string, reason: string, attempts: number): void {
    const { workerConnection, log, work, onOutcome } = this.options;
    work.track(work.withToken(token, async () => {
      await uncountDelivery(workerConnection, queue, job, token);
      await failAttempt(onOutcome, job, token, queue.name, reason, { final: true, attempts });
    }).catch((err: unknown) => {
      log.error({ err, queue: queue.name, taskId: job.id }, 'queues: could not dead-letter a task');
    }));
  }

  /** A fetched job with a flaw (`fetchedTaskOf`), or one whose delivery raised. */
  setAside(queue: TaskQueue, job: TaskJob, token: string, reason: string): void {
    this.options.work.track(this.fail(queue, job.id as string, token, reason, job));
  }

  /**
   * A fetch that raised may have moved a job to active before failing on it
   * (BullMQ could not read its hash): that job is found by its lock and set
   * aside. True when there was one.
   */
  async afterFetchError(queue: TaskQueue, token: string, err: unknown): Promise<boolean> {
    const id = await jobLockedWith(this.options.workerConnection, queue, token);
    if (id === null) return false;
    return this.fail(queue, id, token, `undeliverable: BullMQ could not read it (${(err as Error).message})`, undefined, true);
  }

  /**
   * Fails the job as undeliverable. `onlyIfUnreadable`: a fetch that raised
   * for another reason than the job's own hash leaves the job alone (it
   * returns when its lease expires); false then.
   */
  private async fail(queue: TaskQueue, id: string, token: string, reason: string, fetched?: TaskJob, onlyIfUnreadable = false): Promise<boolean> {
    const { workerConnection, log: logger, work } = this.options;
    const log = { queue: queue.name, taskId: id, reason };
    let failed = false;
    try {
      await work.withToken(token, async () => {
        const repaired = await repairUnreadable(workerConnection, queue, id, token);
        if (onlyIfUnreadable && !('gone' in repaired) && repaired.fields.length === 0) return;
        failed = true;
        this.options.onUndeliverable?.(queue.name);
        if ('gone' in repaired) {
          logger.warn(log, 'queues: a fetched task has no hash; taken out of the active list');
          return;
        }
        const job = fetched !== undefined && repaired.fields.length === 0 ? fetched : await storedJob(queue, id);
        if (!job) return;
        job.token = token;
        const why = repaired.fields.length === 0 ? reason : `${reason}; not JSON: ${repaired.fields.join(', ')} (kept as unreadable:FIELD)`;
        logger.warn({ ...log, reason: why }, 'queues: task failed as undeliverable');
        await failAttempt(this.options.onOutcome, job, token, queue.name, why, { final: true });
      });
    } catch (err) {
      logger.error({ ...log, err }, 'queues: could not fail an undeliverable task; it returns when its lease expires');
    }
    return failed;
  }
}
