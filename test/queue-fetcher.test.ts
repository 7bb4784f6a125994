import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import t from 'tap';
import { GATEWAY_WORKER_NAME, jobHost } from '../src/queues/bullmq-adapter.js';
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
