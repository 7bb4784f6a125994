import t from 'tap';
import { newestFirst } from './helpers/closers.js';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

// An idle queue name costs the gateway nothing; its next use opens it again.
const closing = newestFirst(t);
const redis = await startRedis(closing);

async function socket(url: string): Promise<TestSocket> {
  const opened = await TestSocket.open(url);
  t.teardown(() => opened.close());
  return opened;
}

async function metrics(httpUrl: string): Promise<string> {
  return (await fetch(`${httpUrl}/metrics`)).text();
}

t.test('idle queues are evicted and come back transparently', async (t) => {
  const gw = await startGateway(closing, { redisUrl: redis.url, queuePrefix: 'idle', queueIdleMs: 200 });
  const worker = await socket(gw.busUrl);
  for (let i = 0; i < 20; i++) await worker.call({ action: 'enqueue', queue: `idle.${i}`, task: i });
  t.equal(gw.app.queues.liveQueueCount, 20);
  await until(() => gw.app.queues.liveQueueCount === 0, 10_000, 'idle queues evicted');
  // Enqueued by someone else while the queue is evicted: still there for the next pull.
  const other = await socket(gw.busUrl);
  await other.call({ action: 'enqueue', queue: 'idle.3', task: 'later' });
  worker.send({ action: 'pull', queue: 'idle.3' });
  const first = await worker.next((f) => 'task' in f) as { task: { id: string; payload: unknown } };
  t.equal(first.task.payload, 3, 'the first task of the evicted queue comes first');
  t.equal((await worker.call({ action: 'ack', taskId: first.task.id })).ok, true);
  worker.send({ action: 'pull', queue: 'idle.3' });
  const second = await worker.next((f) => 'task' in f && (f.task as { id: string }).id !== first.task.id) as { task: { id: string; payload: unknown } };
  t.equal(second.task.payload, 'later');
  t.equal((await worker.call({ action: 'ack', taskId: second.task.id })).ok, true);
  const completed = /^brainstem_queue_completed_total\{queue="idle\.3"\} 2$/m;
  t.match(await metrics(gw.httpUrl), completed, 'its completions are counted while it is live');
  // A queue with a pull waiting is never evicted, however long it waits:
  // the eviction that takes idle.3 (done with) passes it over.
  await worker.call({ action: 'pull', queue: 'idle.waiting' });
  await until(() => gw.app.queues.liveQueueCount === 1, 10_000, 'idle.3 evicted, idle.waiting kept');
  t.notMatch(await metrics(gw.httpUrl), /queue="idle\.3"\}/, 'an evicted queue\'s series go with it');
  await other.call({ action: 'enqueue', queue: 'idle.waiting', task: 'for the waiting pull' });
  const waited = await worker.next((f) => 'task' in f && (f.task as { queue: string }).queue === 'idle.waiting') as { task: { payload: unknown } };
  t.equal(waited.task.payload, 'for the waiting pull');
});

t.test('limits: queue names per connection and live queues per gateway', async (t) => {
  const gw = await startGateway(closing, {
    redisUrl: redis.url, queuePrefix: 'limits', queueMaxPerConnection: 5, queueMaxLive: 8,
  });
  const greedy = await socket(gw.busUrl);
  for (let i = 0; i < 5; i++) t.equal((await greedy.call({ action: 'pull', queue: `lim.${i}` })).ok, true);
  const refused = await greedy.call({ action: 'enqueue', queue: 'lim.5', task: 1 });
  t.equal(refused.code, 'TOO_MANY_QUEUES');
  t.match(refused.error, /QUEUE_MAX_PER_CONNECTION/);
  t.equal((await greedy.call({ action: 'enqueue', queue: 'lim.4', task: 1 })).ok, true, 'a name it already uses still works');
  const second = await socket(gw.busUrl);
  for (let i = 5; i < 8; i++) t.equal((await second.call({ action: 'pull', queue: `lim.${i}` })).ok, true);
  const full = await second.call({ action: 'pull', queue: 'lim.8' });
  t.equal(full.code, 'TOO_MANY_QUEUES', 'eight queues live, each with a pull waiting: a ninth is refused');
  t.match(full.error, /QUEUE_MAX_LIVE/);
  const rest = await fetch(`${gw.httpUrl}/queues/lim.9/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"task":1}' });
  t.equal(rest.status, 429);
  const figures = await metrics(gw.httpUrl);
  t.match(figures, /brainstem_queue_live 8/);
  t.match(figures, /brainstem_queue_limit_refusals_total 3/);
});
