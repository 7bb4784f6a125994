/**
 * What a test received, in order, and waits on: `next` takes the first item
 * (optionally matching) not yet taken, now or when it arrives, or rejects
 * after `timeoutMs` with `failure`'s words. Items nobody waits for stay in
 * `items`, where a test may also look.
 */
export class MatchQueue<T> {
  readonly items: T[] = [];
  private readonly waiters: { predicate: (item: T) => boolean; resolve: (item: T) => void }[] = [];

  constructor(private readonly failure: (timeoutMs: number, unmatched: T[]) => string) {}

  push(item: T): void {
    const index = this.waiters.findIndex((waiter) => waiter.predicate(item));
    if (index >= 0) this.waiters.splice(index, 1)[0]?.resolve(item);
    else this.items.push(item);
  }

  next(predicate: (item: T) => boolean, timeoutMs: number): Promise<T> {
    const index = this.items.findIndex(predicate);
    if (index >= 0) return Promise.resolve(this.items.splice(index, 1)[0] as T);
    return new Promise((resolve, reject) => {
      const waiter = {
        predicate,
        resolve: (item: T) => {
          clearTimeout(timer);
          resolve(item);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(this.failure(timeoutMs, this.items)));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }
}
