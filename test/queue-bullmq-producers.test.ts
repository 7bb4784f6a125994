import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { newestFirst } from './helpers/closers.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

// Plain BullMQ producers and workers on the gateway's Redis, with the gateway's prefix.
const closing = newestFirst(t);
const redis = await startRedis(closing);
const PREFIX = 'bsq';
const gw = await startGateway(closing, { redisUrl: redis.url, queuePrefix: PREFIX });
const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
closing.teardown(() => connection.disconnect());

/** A connection of its own for a raw Worker (BullMQ leaves a connection it was given open). */
function ownConnection(): Redis {
  const own = connection.duplicate();
  closing.teardown(() => own.disconnect());
  return own;
}

function bullQueue(name: string): Queue {
  const queue = new Queue(name, { connection, prefix: PREFIX });
  closing.teardown(() => queue.close());
  return queue;
}

async function worker(): Promise<TestSocket> {
  const socket = await TestSocket.open(gw.busUrl);
  t.teardown(() => socket.close());
  return socket;
}

/** Pulls one task of `queue` over /bus and acks it with `result`; resolves with the task frame. */
async function pullAndAck(socket: TestSocket, queue: string, result: unknown): Promise<Record<string, unknown>> {
  socket.send({ action: 'pull', queue });
  const { task } = await socket.next((f) => 'task' in f) as { task: Record<string, unknown> };
  const receipt = await socket.call({ action: 'ack', taskId: task.id, result });
  t.same(receipt.ok, true, `ack of ${String(task.id)} accepted`);
  return task;
}

t.test('a plain Queue.add with no options is delivered once and completed with the ack\'s result', async (t) => {
  const queue = bullQueue('plain.none');
  const job = await queue.add('x', { hello: 1 });
  const socket = await worker();
  const task = await pullAndAck(socket, 'plain.none', { done: 1 });
  t.equal(task.id, job.id, 'BullMQ\'s numeric id is the task id');
  t.same(task.payload, { hello: 1 });
  t.equal(task.attempts, 1);
  const stored = await queue.getJob(job.id as string);
  t.equal(await stored?.getState(), 'completed');
  t.same(stored?.returnvalue, { done: 1 });
  const view = await (await fetch(`${gw.httpUrl}/queues/plain.none/tasks/${job.id}`)).json() as Record<string, unknown>;
  t.equal(view.state, 'completed');
  t.equal(view.maxAttempts, 1, 'no attempts option means one attempt, as BullMQ runs it');
});

t.test('a plain job failed over the bus fails for good after its one attempt, with the reason', async (t) => {
  const queue = bullQueue('plain.fail');
  const job = await queue.add('x', { n: 1 });
  const socket = await worker();
  socket.send({ action: 'pull', queue: 'plain.fail' });
  const { task } = await socket.next((f) => 'task' in f) as { task: Record<string, unknown> };
  t.same((await socket.call({ action: 'fail', taskId: task.id, reason: 'nope' })).ok, true);
  const stored = await queue.getJob(job.id as string);
  t.equal(await stored?.getState(), 'failed');
  t.equal(stored?.failedReason, 'nope');
});

t.test('attempts: 3 from a producer: failed attempts come back, the third ack completes it', async (t) => {
  const queue = bullQueue('plain.attempts');
  const job = await queue.add('x', { n: 3 }, { attempts: 3 });
  const socket = await worker();
  for (const attempt of [1, 2]) {
    socket.send({ action: 'pull', queue: 'plain.attempts' });
    const { task } = await socket.next((f) => 'task' in f) as { task: Record<string, unknown> };
    t.equal(task.attempts, attempt);
    t.same((await socket.call({ action: 'fail', taskId: task.id, reason: `try ${attempt}` })).ok, true);
  }
  const task = await pullAndAck(socket, 'plain.attempts', 'third time');
  t.equal(task.attempts, 3);
  const stored = await queue.getJob(job.id as string);
  t.equal(await stored?.getState(), 'completed');
  t.equal(stored?.returnvalue, 'third time');
});

t.test('a custom numeric-looking id, a name, a priority and a delay', async (t) => {
  const queue = bullQueue('plain.shapes');
  await queue.add('custom', { id: true }, { jobId: '12345x' });
  await queue.add('prio', { p: true }, { priority: 5 });
  await queue.add('later', { d: true }, { delay: 150 });
  const socket = await worker();
  const seen = new Map<string, unknown>();
  for (let i = 0; i < 3; i++) {
    const task = await pullAndAck(socket, 'plain.shapes', i);
    seen.set(String(task.id), task.payload);
  }
  t.same(seen.get('12345x'), { id: true });
  t.same([...seen.values()].map((p) => Object.keys(p as object)[0]).sort(), ['d', 'id', 'p']);
  const counts = await queue.getJobCounts('completed', 'failed');
  t.same(counts, { completed: 3, failed: 0 });
});

t.test('addBulk of 100: every job pulled over /bus and completed', async (t) => {
  const queue = bullQueue('plain.bulk');
  const jobs = await queue.addBulk(Array.from({ length: 100 }, (_, i) => ({ name: 'bulk', data: { i } })));
  const socket = await worker();
  const pulls = 100;
  for (let i = 0; i < pulls; i++) socket.send({ action: 'pull', queue: 'plain.bulk' });
  const ids = new Set<string>();
  for (let i = 0; i < pulls; i++) {
    const { task } = await socket.next((f) => 'task' in f) as { task: { id: string; payload: { i: number } } };
    ids.add(task.id);
    socket.send({ action: 'ack', taskId: task.id, result: task.payload.i * 2 });
  }
  t.equal(ids.size, 100);
  await until(async () => (await queue.getCompletedCount()) === 100, 10_000);
  const sample = await queue.getJob(jobs[42]?.id as string);
  t.equal(sample?.returnvalue, 84, 'the ack\'s result is the job\'s return value');
  t.equal(await queue.getFailedCount(), 0, 'nothing dead-lettered');
});

t.test('a flow\'s child is delivered; its parent runs once the child is done', async (t) => {
  const { FlowProducer } = await import('bullmq');
  const flows = new FlowProducer({ connection, prefix: PREFIX });
  closing.teardown(() => flows.close());
  const tree = await flows.add({ name: 'parent', queueName: 'plain.flow', data: { role: 'parent' }, children: [
    { name: 'child', queueName: 'plain.flow', data: { role: 'child' } },
  ] });
  const socket = await worker();
  const child = await pullAndAck(socket, 'plain.flow', 'child done');
  t.same(child.payload, { role: 'child' });
  const parent = await pullAndAck(socket, 'plain.flow', 'parent done');
  t.same(parent.payload, { role: 'parent' });
  t.equal(parent.id, tree.job.id);
});

t.test('a task enqueued through the gateway with replyTo and done by a raw BullMQ Worker: reply and queue.* events', async (t) => {
  const requester = await worker();
  t.same((await requester.call({ action: 'subscribe', topic: 'raw.reply' })).ok, true);
  t.same((await requester.call({ action: 'subscribe', topic: 'queue.*' })).ok, true);
  const okReceipt = await requester.call({ action: 'enqueue', queue: 'raw.work', task: { n: 2 }, opts: { replyTo: 'raw.reply' } });
  const failReceipt = await requester.call({ action: 'enqueue', queue: 'raw.work', task: { n: -1 }, opts: { replyTo: 'raw.reply', attempts: 1 } });
  const raw = new Worker('raw.work', async (job) => {
    const { n } = job.data as { n: number };
    if (n < 0) throw new Error('negative');
    return { squared: n * n };
  }, { connection: ownConnection(), prefix: PREFIX });
  t.teardown(() => raw.close());

  const replies = [await requester.event('raw.reply'), await requester.event('raw.reply')] as { event: Record<string, unknown> }[];
  const byId = new Map(replies.map((r) => [r.event.correlationId, r.event.payload]));
  t.same(byId.get(okReceipt.taskId), { squared: 4 }, 'the requester gets the raw worker\'s result');
  t.same(byId.get(failReceipt.taskId), { error: 'negative' }, 'and the failure as {error}');
  const completed = await requester.event('queue.completed') as { event: { payload: Record<string, unknown> } };
  t.equal(completed.event.payload.taskId, okReceipt.taskId);
  const dead = await requester.event('queue.dead') as { event: { payload: Record<string, unknown> } };
  t.equal(dead.event.payload.taskId, failReceipt.taskId);
  t.equal(dead.event.payload.reason, 'negative');
  await raw.close();

  // The gateway's own settlements are published once: a barrier (an echo
  // published after the ack) shows no second reply came before it.
  const gatewayTask = await requester.call({ action: 'enqueue', queue: 'raw.work', task: { n: 3 }, opts: { replyTo: 'raw.reply' } });
  await pullAndAck(requester, 'raw.work', 'by the gateway');
  const reply = await requester.event('raw.reply') as { event: Record<string, unknown> };
  t.equal(reply.event.correlationId, gatewayTask.taskId);
  // A raw settlement is relayed after a Redis round trip: wait past one with a second raw task, then count.
  const probe = await requester.call({ action: 'enqueue', queue: 'raw.work', task: { n: 5 }, opts: { replyTo: 'raw.reply' } });
  const raw2 = new Worker('raw.work', async () => 'probe', { connection: ownConnection(), prefix: PREFIX });
  t.teardown(() => raw2.close());
  const probeReply = await requester.event('raw.reply') as { event: Record<string, unknown> };
  t.equal(probeReply.event.correlationId, probe.taskId, 'the next reply is the probe\'s: the gateway-settled task was not replied to twice');
});
