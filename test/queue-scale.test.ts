import { Redis } from 'ioredis';
import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

// Queue names come from clients: what each one costs the gateway, and the limits.
const closers: (() => unknown)[] = [];
t.teardown(async () => {
  for (const close of closers.reverse()) await close();
});
const redis = await startRedis(t);
const probe = new Redis(redis.url);
closers.push(() => probe.disconnect());

/** Clients connected to Redis, the probe's own left out. */
async function redisClients(): Promise<number> {
  const list = await probe.client('LIST') as string;
  return list.trim().split('\n').length - 1;
}

async function socket(url: string): Promise<TestSocket> {
  const opened = await TestSocket.open(url);
  t.teardown(() => opened.close());
  return opened;
}

t.test('the gateway\'s Redis connections do not grow with the number of queue names', async (t) => {
  const gw = await startGateway({ teardown: (fn) => closers.push(fn) }, { redisUrl: redis.url, queuePrefix: 'scale' });
  const worker = await socket(gw.busUrl);
  const producer = await socket(gw.busUrl);
  // One queue live first: the connections every queue shares are open then.
  await worker.call({ action: 'pull', queue: 'scale.0' });
  await until(async () => (await redisClients()) > 0);
  const withOne = await redisClients();
  const names = Array.from({ length: 300 }, (_, i) => `scale.${i}`);
  for (const queue of names.slice(1)) await worker.call({ action: 'pull', queue });
  for (const queue of names) await producer.call({ action: 'enqueue', queue, task: { queue } });
  const delivered = new Set<string>();
  while (delivered.size < names.length) {
    const { task } = await worker.next((f) => 'task' in f, 15_000) as { task: { queue: string; payload: { queue: string } } };
    t.equal(task.payload.queue, task.queue, 'each task on its own queue');
    delivered.add(task.queue);
  }
  t.equal(await redisClients(), withOne, `${withOne} Redis clients with 1 queue and with 300`);
  t.ok(withOne <= 8, `at most 8 Redis clients (${withOne})`);
  t.equal(gw.app.queues.liveQueueCount, 300);
});

t.test('idle queues are evicted and come back transparently', async (t) => {
  const gw = await startGateway({ teardown: (fn) => closers.push(fn) }, { redisUrl: redis.url, queuePrefix: 'idle', queueIdleMs: 200 });
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
  // A queue with a pull waiting is never evicted, however long it waits:
  // the eviction that takes idle.3 (done with) passes it over.
  await worker.call({ action: 'pull', queue: 'idle.waiting' });
  await until(() => gw.app.queues.liveQueueCount === 1, 10_000, 'idle.3 evicted, idle.waiting kept');
  await other.call({ action: 'enqueue', queue: 'idle.waiting', task: 'for the waiting pull' });
  const waited = await worker.next((f) => 'task' in f && (f.task as { queue: string }).queue === 'idle.waiting') as { task: { payload: unknown } };
  t.equal(waited.task.payload, 'for the waiting pull');
});

t.test('limits: queue names per connection and live queues per gateway', async (t) => {
  const gw = await startGateway({ teardown: (fn) => closers.push(fn) }, {
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
  const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text();
  t.match(metrics, /brainstem_queue_live 8/);
  t.match(metrics, /brainstem_queue_limit_refusals_total 3/);
});
