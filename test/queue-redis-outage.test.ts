import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;
const isTask = (f: Frame) => 'task' in f;

t.test('Redis down: enqueue is refused with UNAVAILABLE (never a receipt), health 503, pub/sub goes on; all resumes when it is back', async (t) => {
  const redis = await startRedis(t);
  const gw = await startGateway(t, { redisUrl: redis.url });
  const worker = await TestSocket.open(`${gw.busUrl}?name=worker`);
  const producer = await TestSocket.open(`${gw.busUrl}?name=producer`);
  const listener = await TestSocket.open(`${gw.busUrl}?name=listener`);
  t.teardown(() => { worker.close(); producer.close(); listener.close(); });
  const queue = 'agent.think';

  const held = await producer.call({ action: 'enqueue', queue, task: 'held across the outage' });
  await worker.call({ action: 'pull', queue });
  t.equal(((await worker.next(isTask)).task as Frame).id, held.taskId);

  await redis.stop();
  await until(async () => (await fetch(`${gw.httpUrl}/health`)).status === 503);
  const started = Date.now();
  const refused = await producer.call({ action: 'enqueue', queue, task: 'lost?' }, 'e1');
  t.same(refused, { error: 'the queue store (Redis) is unreachable: nothing was changed', code: 'UNAVAILABLE', id: 'e1' });
  t.ok(Date.now() - started < 3000, 'at once, not after the 5 s store timeout');
  const rest = await fetch(`${gw.httpUrl}/queues/${queue}/tasks`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ task: 1 }),
  });
  t.equal(rest.status, 503);
  t.match(await rest.json(), { code: 'UNAVAILABLE' });
  t.equal((await fetch(`${gw.httpUrl}/queues`)).status, 503);

  await listener.call({ action: 'subscribe', topic: 'chat.message' });
  producer.send({ action: 'publish', message: { type: 'chat.message', payload: 'still here' } });
  t.match((await listener.event('chat.message')).event, { payload: 'still here' }, 'pub/sub does not need Redis');

  t.same(await worker.call({ action: 'pull', queue }, 'p2'), { ok: true, id: 'p2' }, 'a pull waits for Redis');
  worker.send({ action: 'ack', taskId: held.taskId, id: 'ack-held' });

  await redis.restart();
  t.same(await worker.next((f) => f.id === 'ack-held', 15_000), { ok: true, id: 'ack-held' }, 'the ack sent during the outage lands');
  await until(async () => (await fetch(`${gw.httpUrl}/health`)).status === 200, 15_000);
  let accepted: Frame = {};
  await until(async () => {
    accepted = await producer.call({ action: 'enqueue', queue, task: 'after' });
    return accepted.ok === true;
  }, 10_000);
  const delivered = await worker.next(isTask, 10_000);
  t.match(delivered, { task: { id: accepted.taskId, payload: 'after' }, id: 'p2' }, 'the pull made during the outage gets the next task');
  const counts = (await (await fetch(`${gw.httpUrl}/queues/${queue}`)).json() as Frame).counts;
  t.match(counts, { completed: 1, active: 1, waiting: 0 }, 'the refused task was never stored');
});
