interface Teardown {
  teardown(fn: () => unknown): void;
}

/**
 * Teardowns run newest first, in one of the test's own teardowns: what uses
 * Redis (queues, workers, a gateway) is closed before the Redis it uses, which
 * the test registered earlier with `startRedis(t)`.
 */
export function newestFirst(t: Teardown): Teardown {
  const closers: (() => unknown)[] = [];
  t.teardown(async () => {
    for (const close of closers.reverse()) await close();
  });
  return { teardown: (fn) => closers.push(fn) };
}
