import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import t from 'tap';
import { GATEWAY_WORKER_NAME, jobHost, moveToActive } from '../src/queues/bullmq-adapter.js';
import { startGateway } from './helpers/gateway.js';
import { connect, enqueueAll, missing, nextFrame, QUEUE, RECEIPTED, work } from './helpers/queue-load.js';
import { startRedis } from './helpers/redis.js';
import { until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;

t.test('a Redis restart (append-only file) under load: every receipted task arrives', async (t) => {
  const redis = await startRedis(t, { appendonly: true });
  // Leases longer than the wait below: a task may not rely on its lease expiring to come back.
  const gw = await startGateway(t, { redisUrl: redis.url, queueKeepCompleted: 100_000, queueLeaseMs: 60_000 });
  const worker = work(await connect(`${gw.busUrl}?name=worker`, t), 10);
  const producer = await connect(`${gw.busUrl}?name=producer`, t);
  let restarted: Promise<void> = Promise.resolve();
  const { receipted, enough } = enqueueAll(producer, () => {
    restarted = redis.stop().then(() => new Promise((r) => setTimeout(r, 300))).then(() => redis.restart());
  });
  await enough;
  await restarted;
  t.ok(worker.delivered.length < RECEIPTED, `Redis went down mid-work (${worker.delivered.length} delivered)`);
  await until(() => missing(receipted, worker.acked).length === 0, 30_000).catch(() => undefined);
  t.same(missing(receipted, worker.acked), [], `all ${receipted.size} receipted tasks were done, none missing`, {
    errors: worker.errors.slice(0, 5),
  });
  const countsOf = async () => ((await (await fetch(`${gw.httpUrl}/queues/${QUEUE}`)).json()) as Frame).counts as Frame;
  await until(async () => {
    const now = await countsOf();
    return now.waiting === 0 && now.active === 0;
  }, 20_000).catch(() => undefined);
  const counts = await countsOf();
  t.match(counts, { waiting: 0, active: 0, failed: 0 });
  t.ok((counts.completed as number) >= receipted.size, `Redis holds ${String(counts.completed)} completed`);
});

t.test('after a Redis restart, a task left locked with the token of a task a worker holds goes back at once', async (t) => {
  // What a resent fetch leaves: its first reply lost, the task it had moved
  // stays locked with the token the resent fetch (and the worker's task) goes on with.
  const redis = await startRedis(t, { appendonly: true });
  const gw = await startGateway(t, { redisUrl: redis.url, queueLeaseMs: 60_000 });
  const producer = await connect(`${gw.busUrl}?name=producer`, t);
  const worker = await connect(`${gw.busUrl}?name=worker`, t);
  const enqueue = async (n: string) => {
    const receipt = nextFrame(producer, (frame) => frame.id === n && frame.ok === true);
    producer.send(JSON.stringify({ action: 'enqueue', queue: 'orphan.work', task: { n }, id: n }));
    return (await receipt).taskId as string;
  };
  await enqueue('held');
  const held = nextFrame(worker, (frame) => frame.task !== undefined);
  worker.send(JSON.stringify({ action: 'pull', queue: 'orphan.work' }));
  const heldId = ((await held).task as Frame).id as string;
  const orphanId = await enqueue('orphan');
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  const template = new Queue('template', { connection, prefix: 'orphan-template' });
  const queue = new Queue('orphan.work', { connection, prefix: 'bull' });
  const token = await connection.get(`bull:orphan.work:${heldId}:lock`) as string;
  const moved = await moveToActive(jobHost(template, queue, { prefix: 'bull', lockDuration: 60_000, name: GATEWAY_WORKER_NAME }), token);
  t.equal(moved.job?.id, orphanId, 'the second task locked with the held task\'s token');
  await queue.close();
  await template.close();
  connection.disconnect();
  await redis.stop();
  await redis.restart();
  const back = nextFrame(worker, (frame) => (frame.task as Frame | undefined)?.id === orphanId, 15_000);
  worker.send(JSON.stringify({ action: 'pull', queue: 'orphan.work' }));
  t.equal(((await back).task as Frame).id, orphanId, 'delivered again well before its 60 s lease ends');
});
