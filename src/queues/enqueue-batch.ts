import { addMany, type NewJob, type TaskJob, type TaskQueue } from './bullmq-adapter.js';

/**
 * Enqueues per Redis call at most: a call holds all of Redis while it runs
 * (some 20 µs a job), so a producer's burst goes in slices that let other
 * commands (fetches, acks, other queues) in between.
 */
const MAX_ADDS_PER_CALL = 100;

/** An enqueue waiting for this tick's call. */
interface PendingEnqueue extends NewJob {
  resolve(job: TaskJob): void;
  reject(err: unknown): void;
}

/**
 * The enqueues of one queue's tick, stored in one Redis call (one per
 * MAX_ADDS_PER_CALL): a producer's read often holds many enqueues, and
 * each of BullMQ's adds costs the gateway and Redis a script call of its
 * own. One enqueue alone is BullMQ's own `queue.add`; each settles with
 * its own job or error, once Redis has answered for it.
 */
export class EnqueueBatch {
  /** This tick's enqueues, sent once the tick's code has run (null: none yet). */
  private pending: PendingEnqueue[] | null = null;

  constructor(private readonly queue: TaskQueue) {}

  /** `queue.add(name, data, opts)`, answered as BullMQ answers it. */
  add(job: NewJob): Promise<TaskJob> {
    return new Promise((resolve, reject) => {
      if (this.pending === null) {
        this.pending = [];
        queueMicrotask(() => this.send());
      }
      this.pending.push({ ...job, resolve, reject });
    });
  }

  private send(): void {
    const pending = this.pending ?? [];
    this.pending = null;
    for (let start = 0; start < pending.length; start += MAX_ADDS_PER_CALL) this.store(pending.slice(start, start + MAX_ADDS_PER_CALL));
  }

  private store(enqueues: PendingEnqueue[]): void {
    const [only] = enqueues;
    if (enqueues.length === 1 && only) {
      this.queue.add(only.name, only.data, only.opts).then(only.resolve, only.reject);
      return;
    }
    addMany(this.queue, enqueues).then((results) => {
      enqueues.forEach((enqueue, index) => {
        const result = results[index] as TaskJob | Error;
        if (result instanceof Error) enqueue.reject(result);
        else enqueue.resolve(result);
      });
    }, (err: unknown) => {
      for (const enqueue of enqueues) enqueue.reject(err);
    });
  }
}
