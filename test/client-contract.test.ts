import { readFileSync } from 'node:fs';
import t from 'tap';
import { CONTRACT, defaultOptions, pullRetryDelayMs, PULL_RETRY_INITIAL_MS, PULL_RETRY_MAX_MS } from '../src/client/defaults.js';
import { TaskWorker, type WorkerPort } from '../src/client/task-worker.js';
import { BrokerError, type Task } from '../src/client/types.js';

const file = JSON.parse(readFileSync(new URL('../clients/contract.json', import.meta.url), 'utf8')) as { rows: { name: string; value: unknown; typescript: string | null }[] };

t.test('every option default is the contract row that names it', async (t) => {
  const defaults = defaultOptions() as unknown as Record<string, unknown>;
  const named = file.rows.filter((row) => row.typescript !== null);
  t.ok(named.length > 0);
  for (const row of named) {
    const value = (row.typescript as string).split('.').reduce<unknown>((inner, key) => (inner as Record<string, unknown>)[key], defaults);
    t.same(value, row.value, row.name);
  }
  t.same([...CONTRACT.keys()], file.rows.map((row) => row.name), 'every row is loaded');
});

t.test('a refused pull waits the initial delay, doubling per refusal in a row up to the cap', async (t) => {
  t.equal(pullRetryDelayMs(0), PULL_RETRY_INITIAL_MS);
  t.equal(pullRetryDelayMs(1), 2 * PULL_RETRY_INITIAL_MS);
  t.equal(pullRetryDelayMs(40), PULL_RETRY_MAX_MS);
});

/** The worker's view of a client, recording what the worker asks of it. */
function recordingPort() {
  const seen = { pulls: 0, delays: [] as number[], reported: [] as string[], retries: [] as (() => void)[] };
  const port: WorkerPort = {
    pull: () => {
      seen.pulls++;
    },
    settle: async () => {},
    release: () => {},
    report: (err) => seen.reported.push((err as BrokerError).code),
    schedule: (fn, ms) => {
      seen.delays.push(ms);
      seen.retries.push(fn);
      return () => {};
    },
  };
  return { port, seen };
}

t.test('a worker asks a refused pull again after the contract\'s delays, from the start once a task came; other refusals are reported only', async (t) => {
  const { port, seen } = recordingPort();
  let handled!: () => void;
  const done = new Promise<void>((resolve) => {
    handled = resolve;
  });
  const worker = new TaskWorker(port, 'jobs', () => handled(), 1);
  worker.start();
  t.equal(seen.pulls, 1);

  for (const code of ['UNAVAILABLE', 'RATE_LIMITED', 'UNAVAILABLE']) {
    worker.pullRefused(new BrokerError(code, 'refused'));
    seen.retries.shift()?.();
  }
  t.same(seen.delays, [pullRetryDelayMs(0), pullRetryDelayMs(1), pullRetryDelayMs(2)], 'doubling per refusal in a row');
  t.equal(seen.pulls, 4, 'each one asked again');

  worker.run({ id: 't1', queue: 'jobs', payload: null, createdAt: 0, attempts: 1 } as Task);
  await done;
  worker.pullRefused(new BrokerError('UNAVAILABLE', 'refused'));
  t.equal(seen.delays.at(-1), pullRetryDelayMs(0), 'a pull that brought a task starts the delays again');

  worker.pullRefused(new BrokerError('FORBIDDEN', 'not allowed'));
  t.equal(seen.delays.length, 4, 'a refusal outside pullRetryCodes is not asked again');
  t.same(seen.reported, ['UNAVAILABLE', 'RATE_LIMITED', 'UNAVAILABLE', 'UNAVAILABLE', 'FORBIDDEN'], 'every refusal is reported');
  worker.halt();
});
