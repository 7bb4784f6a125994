import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import t from 'tap';
import { GATEWAY_WORKER_NAME, jobHost } from '../src/queues/bullmq-adapter.js';
import { EnqueueBatch } from '../src/queues/enqueue-batch.js';
import { MarkerWatch } from '../src/queues/marker-watch.js';
import type { QueueLogger } from '../src/queues/queue-logger.js';
import { QueueFetcher } from '../src/queues/queue-fetcher.js';
import { newestFirst } from './helpers/closers.js';
import { startRedis } from './helpers/redis.js';

const closing = newestFirst(t);
const redis = await startRedis(closing);
const PREFIX = 'fetcher';
const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
const blocking = new Redis(redis.url, { maxRetriesPerRequest: null });
closing.teardown(() => connection.disconnect());
closing.teardown(() => blocking.disconnect());
const template = new Queue('template', { connection, prefix: 'fetcher-template' });
closing.teardown(() => template.close());
const log: QueueLogger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
const markers = new MarkerWatch(blocking, connection, log);
closing.teardown(() => markers.close());

function fetcherOf(name: string): { queue: Queue; fetcher: QueueFetcher } {
  const queue = new Queue(name, { connection, prefix: PREFIX });
  closing.teardown(() => queue.close());
  const host = jobHost(template, queue, { prefix: PREFIX, lockDuration: 30_000, stalledInterval: 30_000, maxStalledCount: 1, name: GATEWAY_WORKER_NAME });
  const fetcher = new QueueFetcher(host, markers, 100, 'fetcher-test');
  closing.teardown(() => fetcher.close());
  return { queue, fetcher };
}

async function scriptCalls(): Promise<number> {
  const stats = await connection.info('commandstats');
  return [...stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
}

t.test('fetches started in one tick take their tasks in one Redis call, each locked with its own token', async (t) => {
  const { queue, fetcher } = fetcherOf('f.tick');
  const added = [];
  for (let i = 0; i < 3; i++) added.push(await queue.add('x', { n: i }));
  const before = await scriptCalls();
  const jobs = await Promise.all(['a', 'b', 'c', 'd'].map((token) => fetcher.getNextJob(`fetcher-test:${token}`)));
  t.equal(await scriptCalls() - before, 1, 'one script call for the four fetches');
  t.same(jobs.map((job) => job?.id), [...added.map((job) => job.id), undefined], 'the three tasks in order, and none for the fourth');
  t.same(jobs.map((job) => job?.token), ['fetcher-test:a', 'fetcher-test:b', 'fetcher-test:c', undefined]);
  for (const job of jobs.slice(0, 3)) {
    t.equal(await connection.get(`${PREFIX}:f.tick:${job?.id}:lock`), job?.token, `task ${job?.id} locked with its fetch's token`);
    t.equal(job?.attemptsStarted, 1, 'its delivery counted');
  }
  t.same(await queue.getJobCounts('active', 'wait'), { active: 3, wait: 0 });
});

t.test('in a batch, a task BullMQ cannot read fails its own fetch only', async (t) => {
  const { queue, fetcher } = fetcherOf('f.unreadable');
  const good = await queue.add('x', {});
  const bad = await queue.add('x', {});
  await connection.hset(`${PREFIX}:f.unreadable:${bad.id}`, 'opts', '[');
  const last = await queue.add('x', {});
  const results = await Promise.allSettled(['a', 'b', 'c'].map((token) => fetcher.getNextJob(token)));
  t.equal(results[0]?.status === 'fulfilled' && results[0].value?.id, good.id);
  t.equal(results[1]?.status, 'rejected', 'the unreadable task\'s fetch fails (delivery sets the task aside by its lock)');
  t.equal(await connection.get(`${PREFIX}:f.unreadable:${bad.id}:lock`), 'b');
  t.equal(results[2]?.status === 'fulfilled' && results[2].value?.id, last.id, 'the fetch after it still gets its task');
});

/** Resolves once the fetcher's drained fetch waits on the marker (the test polls it, not the clock). */
async function parked(fetcher: QueueFetcher): Promise<NonNullable<ReturnType<QueueFetcher['fetchBehind']>>> {
  for (;;) {
    const behind = fetcher.fetchBehind();
    if (behind) return behind;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** A drained fetcher of `name` whose fetch under `token` waits on the marker, and the enqueues that fetch goes behind. */
async function drainedFetch(name: string, token: string) {
  const { queue, fetcher } = fetcherOf(name);
  fetcher.drainedAfter({ job: undefined, delayUntil: 0 });
  let claimed: ReturnType<QueueFetcher['fetchBehind']>;
  const enqueues = new EnqueueBatch(queue, () => claimed);
  const fetching = fetcher.getNextJob(token);
  claimed = await parked(fetcher);
  return { queue, fetcher, enqueues, fetching };
}

t.test('a drained fetch waiting on the marker gets the task an enqueue stores, fetched right behind it', async (t) => {
  const { fetcher, enqueues, fetching } = await drainedFetch('f.behind', 'fetcher-test:behind');
  t.equal(fetcher.fetchBehind(), undefined, 'a waiting fetch is given to one enqueue call only');
  const before = await scriptCalls();
  const [added, fetched] = await Promise.all([enqueues.add({ name: 'x', data: { n: 1 }, opts: { jobId: 'b1' } }), fetching]);
  t.equal(await scriptCalls() - before, 2, 'the add and the fetch behind it: no fetch after a marker wake');
  t.equal(fetched?.id, added.id, 'the fetch has the task just stored');
  t.equal(fetched?.token, 'fetcher-test:behind');
  t.equal(await connection.get(`${PREFIX}:f.behind:b1:lock`), 'fetcher-test:behind', 'locked with the waiting fetch\'s token');
  t.equal(await connection.zscore(`${PREFIX}:f.behind:marker`, '0'), null, 'nothing left waiting: no marker to wake the next wait for nothing');
});

t.test('a fetch behind a batch takes the first task; the marker stays while tasks wait', async (t) => {
  const { queue, fetcher, enqueues, fetching } = await drainedFetch('f.behind-many', 'fetcher-test:many');
  const [first, second] = await Promise.all([1, 2].map((n) => enqueues.add({ name: 'x', data: { n }, opts: { jobId: `m${n}` } })));
  t.equal((await fetching)?.id, first?.id, 'the first task stored');
  t.equal(await queue.getJobState(second!.id as string), 'waiting', 'the other one waits');
  t.equal(await connection.zscore(`${PREFIX}:f.behind-many:marker`, '0'), '0', 'and its marker is kept for whoever fetches next');
  t.equal((await fetcher.getNextJob('fetcher-test:next'))?.id, second?.id, 'the next fetch takes it without waiting on the marker');
});
