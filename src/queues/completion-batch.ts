import { completeMany, type Completion, type JobHost } from './bullmq-adapter.js';

/** A completion waiting for this tick's call. */
interface PendingCompletion extends Completion {
  resolve(reply: unknown): void;
  reject(err: unknown): void;
}

/**
 * The acks of one queue's tick, completed in one Redis call: a worker's
 * read often holds several acks, and each of BullMQ's calls costs the
 * gateway and Redis a command of its own. One completion alone is
 * BullMQ's own `moveToCompleted`.
 */
export class CompletionBatch {
  /** This tick's completions, sent once the tick's code has run (null: none yet). */
  private pending: PendingCompletion[] | null = null;

  constructor(readonly host: JobHost) {}

  /** `job.moveToCompleted(result, token, fetchNext)`, answered as BullMQ answers it. */
  complete(completion: Completion): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.pending === null) {
        this.pending = [];
        queueMicrotask(() => this.send());
      }
      this.pending.push({ ...completion, resolve, reject });
    });
  }

  private send(): void {
    const completions = this.pending ?? [];
    this.pending = null;
    const [only] = completions;
    if (completions.length === 1 && only) {
      only.job.moveToCompleted(only.result, only.token, only.fetchNext).then(only.resolve, only.reject);
      return;
    }
    completeMany(this.host, completions).then((replies) => {
      completions.forEach((completion, index) => {
        const reply = replies[index];
        if (reply instanceof Error) completion.reject(reply);
        else completion.resolve(reply);
      });
    }, (err: unknown) => {
      for (const completion of completions) completion.reject(err);
    });
  }
}
