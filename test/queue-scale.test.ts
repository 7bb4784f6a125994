import { Redis } from 'ioredis';
import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { newestFirst } from './helpers/closers.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

// Queue names come from clients: what each one costs the gateway, and the limits.
const closing = newestFirst(t);
const redis = await startRedis(closing);
const probe = new Redis(redis.url);
closing.teardown(() => probe.disconnect());

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
  const gw = await startGateway(closing, { redisUrl: redis.url, queuePrefix: 'scale' });
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
