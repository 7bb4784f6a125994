import { addMany, type FetchBehind, type NewJob, type TaskJob, type TaskQueue } from './bullmq-adapter.js';
import { TickBatch } from './tick-batch.js';

/**
 * Enqueues per Redis call at most: a call holds all of Redis while it runs,
 * so a producer's burst goes in slices that let other commands (fetches,
 * acks, other queues) in between.
 */
const MAX_ADDS_PER_CALL = 100;

/**
 * The enqueues of one queue's tick, stored in one Redis call (one per
 * MAX_ADDS_PER_CALL). One enqueue alone is BullMQ's own `queue.add`,
 * unless the queue has a drained fetch waiting on its marker: that fetch
 * then goes right behind the call (`fetchBehind`), so a waiting pull gets
 * the task in the round trip that stored it.
 */
export class EnqueueBatch {
  private readonly batch: TickBatch<NewJob, TaskJob>;

  constructor(queue: TaskQueue, fetchBehind: () => FetchBehind | undefined) {
    this.batch = new TickBatch({
      one: (job) => {
        const behind = fetchBehind();
        if (!behind) return queue.add(job.name, job.data, job.opts);
        return addMany(queue, [job], behind).then(([added]) => {
          if (added instanceof Error || added === undefined) throw added ?? new Error('the enqueue had no reply');
          return added;
        });
      },
      many: (jobs) => addMany(queue, jobs, fetchBehind()),
      maxPerCall: MAX_ADDS_PER_CALL,
    });
  }

  /** `queue.add(name, data, opts)`, answered as BullMQ answers it. */
  add(job: NewJob): Promise<TaskJob> {
    return this.batch.add(job);
  }
}
