/**
 * What the history port answers a publish: '' at once when the event is
 * not stored; else its offset to come ('' when only its msgId was
 * claimed), or null for a repeated msgId.
 */
export type Kept = '' | Promise<string | null>;

interface Pending<R> {
  /** null while its store is in flight. */
  outcome: { offset: string | null } | { error: unknown } | null;
  next(offset: string | null): R;
  resolve(result: R): void;
  reject(err: unknown): void;
}

/**
 * One connection's publishes, handed on in the order it sent them although
 * some are stored in Redis first (retained topics, msgId) and others are
 * not: one not stored, published behind a stored one, waits for it. With
 * nothing in flight, an event not stored is handed on at once.
 */
export class PublishOrder {
  private readonly queue: Pending<unknown>[] = [];

  /** Calls `next` with what `kept` answers, once every earlier publish of the connection has been handed on. */
  inTurn<R>(kept: Kept, next: (offset: string | null) => R): R | Promise<R> {
    if (kept === '' && this.queue.length === 0) return next('');
    return new Promise<R>((resolve, reject) => {
      const pending: Pending<R> = { outcome: null, next, resolve, reject };
      this.queue.push(pending as Pending<unknown>);
      if (kept === '') {
        pending.outcome = { offset: '' };
        this.drain();
        return;
      }
      kept.then(
        (offset) => { pending.outcome = { offset }; this.drain(); },
        (error: unknown) => { pending.outcome = { error }; this.drain(); },
      );
    });
  }

  /** Hands on from the head while the head's store has answered. */
  private drain(): void {
    for (let head = this.queue[0]; head?.outcome; head = this.queue[0]) {
      this.queue.shift();
      const { outcome } = head;
      if ('error' in outcome) {
        head.reject(outcome.error);
        continue;
      }
      try {
        head.resolve(head.next(outcome.offset));
      } catch (err) {
        head.reject(err);
      }
    }
  }
}
