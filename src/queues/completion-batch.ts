import { completeMany, type Completion, type JobHost } from './bullmq-adapter.js';
import { TickBatch } from './tick-batch.js';

/** The acks of one queue's tick, completed in one Redis call. One completion alone is BullMQ's own `moveToCompleted`. */
export class CompletionBatch {
  private readonly batch: TickBatch<Completion, unknown>;

  constructor(readonly host: JobHost) {
    this.batch = new TickBatch({
      one: (completion) => completion.job.moveToCompleted(completion.result, completion.token, completion.fetchNext),
      many: (completions) => completeMany(host, completions),
    });
  }

  /** `job.moveToCompleted(result, token, fetchNext)`, answered as BullMQ answers it. */
  complete(completion: Completion): Promise<unknown> {
    return this.batch.add(completion);
  }
}
