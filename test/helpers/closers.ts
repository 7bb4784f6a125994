interface Teardown {
  teardown(fn: () => unknown): void;
}

/**
 * Teardowns run newest first, in one of the test's own teardowns: what uses
 * Redis (queues, workers, a gateway) is closed before the Redis it uses,
 * started earlier with `startRedis(closing)`. Both go through it: the order
 * of a test's own teardowns is tap's, and a gateway closed after its Redis
 * stopped hung its file until tap's timeout.
 */
export function newestFirst(t: Teardown): Teardown {
  const closers: (() => unknown)[] = [];
  t.teardown(async () => {
    for (const close of closers.reverse()) await close();
  });
  return { teardown: (fn) => closers.push(fn) };
}
