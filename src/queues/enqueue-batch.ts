import { addMany, type NewJob, type TaskJob, type TaskQueue } from './bullmq-adapter.js';

/** An enqueue waiting for this tick's call. */
interface PendingEnqueue extends NewJob {
  resolve(job: TaskJob): void;
  reject(err: unknown): void;
}

/**
 * The enqueues of one queue's tick, stored in one Redis call: a producer's
 * read often holds many enqueues, and each of BullMQ's adds costs the
 * gateway and Redis a script call of its own. One enqueue alone is
 * BullMQ's own `queue.add`; each settles with its own job or error, once
 * Redis has answered for it.
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
    const enqueues = this.pending ?? [];
    this.pending = null;
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
