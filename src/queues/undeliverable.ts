import { jobLockedWith, repairUnreadable, storedJob, type TaskJob } from './bullmq-adapter.js';
import type { QueueContext, QueueRuntime } from './queue-context.js';
import { failAttempt } from './attempt-failure.js';

/**
 * Tasks the fetch loop cannot hand to a worker: their data or options are
 * unreadable, or their hash is gone. Each is failed (dead) with a reason
 * naming the cause, counted and logged once, so the loop goes on serving
 * the queue's other tasks and every other queue.
 */
export class Undeliverable {
  constructor(private readonly ctx: QueueContext) {}

  /** A fetched job `deliveryFlaw` refused, or one whose delivery raised. */
  setAside(runtime: QueueRuntime, job: TaskJob, token: string, reason: string): void {
    this.ctx.track(this.fail(runtime, job.id as string, token, reason, job));
  }

  /**
   * A fetch that raised may have moved a job to active before failing on it
   * (BullMQ could not read its hash): that job is found by its lock and set
   * aside. True when there was one.
   */
  async afterFetchError(runtime: QueueRuntime, token: string, err: unknown): Promise<boolean> {
    const id = await jobLockedWith(this.ctx.options.workerConnection, runtime.queue, token);
    if (id === null) return false;
    return this.fail(runtime, id, token, `undeliverable: BullMQ could not read it (${(err as Error).message})`, undefined, true);
  }

  /**
   * Fails the job as undeliverable. `onlyIfUnreadable`: a fetch that raised
   * for another reason than the job's own hash leaves the job alone (it
   * returns when its lease expires); false then.
   */
  private async fail(runtime: QueueRuntime, id: string, token: string, reason: string, fetched?: TaskJob, onlyIfUnreadable = false): Promise<boolean> {
    const log = { queue: runtime.name, taskId: id, reason };
    let failed = false;
    try {
      await this.ctx.withToken(token, async () => {
        const repaired = await repairUnreadable(this.ctx.options.workerConnection, runtime.queue, id, token);
        if (onlyIfUnreadable && !('gone' in repaired) && repaired.fields.length === 0) return;
        failed = true;
        this.ctx.options.onUndeliverable?.(runtime.name);
        if ('gone' in repaired) {
          this.ctx.log.warn(log, 'queues: a fetched task has no hash; taken out of the active list');
          return;
        }
        const job = fetched !== undefined && repaired.fields.length === 0 ? fetched : await storedJob(runtime.queue, id);
        if (!job) return;
        job.token = token;
        const why = repaired.fields.length === 0 ? reason : `${reason}; not JSON: ${repaired.fields.join(', ')} (kept as unreadable:FIELD)`;
        this.ctx.log.warn({ ...log, reason: why }, 'queues: task failed as undeliverable');
        await failAttempt(this.ctx, job, token, runtime.name, why, { final: true });
      });
    } catch (err) {
      this.ctx.log.error({ ...log, err }, 'queues: could not fail an undeliverable task; it returns when its lease expires');
    }
    return failed;
  }
}
