/** Something waiting for its part of one Redis call's reply. */
export interface Settles<R> {
  resolve(result: R): void;
  reject(err: unknown): void;
}

/** An item waiting for this tick's call. */
interface Pending<I, R> extends Settles<R> {
  item: I;
}

/** Settles each waiter with its own result of one call (an Error rejects that one alone), or all with the call's error. */
export function settleEach<R>(waiting: Settles<R>[], call: Promise<(R | Error)[]>): void {
  call.then((results) => {
    waiting.forEach((each, index) => {
      const result = results[index] as R | Error;
      if (result instanceof Error) each.reject(result);
      else each.resolve(result);
    });
  }, (err: unknown) => {
    for (const each of waiting) each.reject(err);
  });
}

/** How one queue's items reach Redis: one alone as BullMQ's own call, several in one call that answers each. */
export interface BatchCalls<I, R> {
  one(item: I): Promise<R>;
  /** One result per item, in order: an Error for an item that failed alone. */
  many(items: I[]): Promise<(R | Error)[]>;
  /** Items per call at most (a call holds all of Redis while it runs). */
  maxPerCall?: number;
}

/**
 * The items of one tick, sent once the tick's code has run: a client's
 * read often holds many fetches, acks or enqueues of one queue, and each
 * of BullMQ's calls costs the gateway and Redis a command of its own. Each
 * item settles with its own result or error, once Redis answered for it.
 */
export class TickBatch<I, R> {
  private pending: Pending<I, R>[] | null = null;

  constructor(private readonly calls: BatchCalls<I, R>) {}

  add(item: I): Promise<R> {
    return new Promise((resolve, reject) => {
      if (this.pending === null) {
        this.pending = [];
        queueMicrotask(() => this.send());
      }
      this.pending.push({ item, resolve, reject });
    });
  }

  private send(): void {
    const pending = this.pending ?? [];
    this.pending = null;
    const slice = this.calls.maxPerCall ?? pending.length;
    for (let start = 0; start < pending.length; start += slice) this.call(pending.slice(start, start + slice));
  }

  private call(pending: Pending<I, R>[]): void {
    const [only] = pending;
    if (pending.length === 1 && only) {
      this.calls.one(only.item).then(only.resolve, only.reject);
      return;
    }
    settleEach(pending, this.calls.many(pending.map((each) => each.item)));
  }
}
