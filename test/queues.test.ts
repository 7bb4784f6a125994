import { Redis } from 'ioredis';
import t from 'tap';
import type { BuildOptions } from '../app.js';
import { bearer, edgeConfig, tokenSpec } from './helpers/edge.js';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;
interface Task { id: string; queue: string; payload: unknown; createdAt: string; attempts: number }
type Teardown = { teardown(fn: () => unknown): void };

const redis = await startRedis(t);
const gateway = (t: Teardown, options: BuildOptions = {}) => startGateway(t, { redisUrl: redis.url, ...options });

let queueSeq = 0;
/** A queue name of its own for each test: they share one Redis. */
const freshQueue = (base: string) => `${base}.q${++queueSeq}`;

const isTask = (f: Frame) => 'task' in f;
const taskOf = (f: Frame) => f.task as Task;
const nextTask = async (ws: TestSocket, timeoutMs?: number) => taskOf(await ws.next(isTask, timeoutMs));

async function open(url: string, name: string, t: Teardown, query = ''): Promise<TestSocket> {
  const ws = await TestSocket.open(`${url}?name=${name}${query}`);
  t.teardown(() => ws.close());
  return ws;
}

async function getJson(url: string): Promise<{ status: number; body: Frame }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.json() as Frame };
}

async function post(url: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Frame }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() as Frame };
}

t.test('a pull on an empty queue waits; the task is sent as it arrives, with the pull id and the spec shape', async (t) => {
  const gw = await gateway(t);
  const queue = freshQueue('generate.audio');
  const worker = await open(gw.busUrl, 'tts', t);
  const producer = await open(gw.busUrl, 'cephalon', t);
  await producer.call({ action: 'subscribe', topic: 'queue.>' });

  t.same(await worker.call({ action: 'pull', queue }, 'pull-1'), { ok: true, id: 'pull-1' }, 'the pull is acknowledged at once');
  t.ok(await worker.nothing(isTask), 'nothing to deliver yet');

  const receipt = await producer.call({ action: 'enqueue', queue, task: { text: 'hello' } }, 7);
  t.same(Object.keys(receipt).sort(), ['id', 'ok', 'taskId']);
  t.equal(receipt.ok, true);
  t.equal(receipt.id, 7);
  t.match(receipt.taskId, /^[0-9a-f-]{36}$/);

  const frame = await worker.next(isTask);
  t.same(Object.keys(frame), ['task', 'id']);
  t.equal(frame.id, 'pull-1', "the pull's id is echoed on the task");
  const task = taskOf(frame);
  t.same(Object.keys(task), ['id', 'queue', 'payload', 'createdAt', 'attempts']);
  t.equal(task.id, receipt.taskId);
  t.equal(task.queue, queue);
  t.same(task.payload, { text: 'hello' });
  t.equal(task.attempts, 1);
  t.ok(Math.abs(Date.parse(task.createdAt) - Date.now()) < 10_000, 'createdAt is ISO-8601, now');

  t.same(await worker.call({ action: 'ack', taskId: task.id }, 'a'), { ok: true, id: 'a' });
  const completed = (await producer.event('queue.completed')).event as Frame;
  t.same(completed.payload, { queue, taskId: task.id, attempts: 1 });
  t.equal(completed.source, 'brainstem');

  // The user's client sends no ids: silent success, as before.
  producer.send({ action: 'enqueue', queue, task: 2 });
  worker.send({ action: 'pull', queue });
  const second = taskOf(await worker.next());
  t.equal(second.payload, 2, 'without ids the only frame is the task itself');
  worker.send({ action: 'ack', taskId: second.id });
  await producer.event('queue.completed');
  t.ok(await worker.nothing(() => true), 'an ack without id gets no answer');
});

t.test('3 pulls bring 3 of 10 tasks, never more than pulled; each ack and pull brings one more', async (t) => {
  const gw = await gateway(t);
  const queue = freshQueue('fs.index');
  const producer = await open(gw.busUrl, 'watcher', t);
  const worker = await open(gw.busUrl, 'indexer', t);
  const ids: string[] = [];
  for (let i = 0; i < 10; i++) ids.push((await producer.call({ action: 'enqueue', queue, task: { n: i } })).taskId as string);

  for (let i = 0; i < 3; i++) worker.send({ action: 'pull', queue });
  const got = [await nextTask(worker), await nextTask(worker), await nextTask(worker)];
  t.same(got.map((task) => task.payload), [{ n: 0 }, { n: 1 }, { n: 2 }], 'in enqueue order');
  t.ok(await worker.nothing(isTask), 'no fourth task');

  const { body } = await getJson(`${gw.httpUrl}/queues/${queue}`);
  t.match(body.counts, { waiting: 7, active: 3, completed: 0 });
  t.match(body.pullers, [{ name: 'indexer', credits: 0, leased: 3 }]);

  await worker.call({ action: 'ack', taskId: got[0]?.id });
  t.ok(await worker.nothing(isTask), 'an ack is not a pull');
  worker.send({ action: 'pull', queue });
  t.same((await nextTask(worker)).payload, { n: 3 });
});

t.test('pullers of one queue are served in turn: one that pulled ten times does not starve one that pulled once', async (t) => {
  const gw = await gateway(t);
  const queue = freshQueue('agent.think');
  const greedy = await open(gw.busUrl, 'greedy', t);
  const modest = await open(gw.busUrl, 'modest', t);
  const producer = await open(gw.busUrl, 'producer', t);
  for (let i = 0; i < 10; i++) await greedy.call({ action: 'pull', queue });
  await modest.call({ action: 'pull', queue });
  const listed = await getJson(`${gw.httpUrl}/queues`);
  const entry = (listed.body.queues as Frame[]).find((q) => q.name === queue) as Frame;
  t.same(new Set((entry.pullers as Frame[]).map((p) => `${p.name}:${p.credits}`)), new Set(['greedy:10', 'modest:1']));

  await producer.call({ action: 'enqueue', queue, task: 'first' });
  await producer.call({ action: 'enqueue', queue, task: 'second' });
  t.equal((await nextTask(greedy)).payload, 'first');
  t.equal((await nextTask(modest)).payload, 'second', 'the second task goes to the other puller');
  await producer.call({ action: 'enqueue', queue, task: 'third' });
  t.equal((await nextTask(greedy)).payload, 'third');
});

t.test('a worker that closes mid-task: another gets the same task with attempts 2, at once', async (t) => {
  const gw = await gateway(t, { queueBackoffMs: 60_000 });
  const queue = freshQueue('transcribe.audio');
  const observer = await open(gw.busUrl, 'dashboard', t);
  await observer.call({ action: 'subscribe', topic: 'queue.failed' });
  const first = await TestSocket.open(`${gw.busUrl}?name=stt-1`);
  const second = await open(gw.busUrl, 'stt-2', t);
  await first.call({ action: 'pull', queue });
  const { taskId } = await first.call({ action: 'enqueue', queue, task: { clip: 'a.wav' } });
  const delivered = await nextTask(first);
  t.equal(delivered.id, taskId);
  t.equal(delivered.attempts, 1);
  await second.call({ action: 'pull', queue });

  first.close();
  const redelivered = await nextTask(second, 3000);
  t.equal(redelivered.id, taskId, 'the same task');
  t.equal(redelivered.attempts, 2, 'the lost delivery counts as an attempt');
  t.same(redelivered.payload, { clip: 'a.wav' });
  const failed = (await observer.event('queue.failed')).event as Frame;
  t.same(failed.payload, { queue, taskId, attempts: 1, reason: 'worker disconnected' });
  t.match(await second.call({ action: 'ack', taskId }), { ok: true }, 'and it can be acked');
});

t.test('a task that keeps killing its workers ends in the dead letters', async (t) => {
  const gw = await gateway(t);
  const queue = freshQueue('poison.pill');
  const observer = await open(gw.busUrl, 'dashboard', t);
  await observer.call({ action: 'subscribe', topic: 'queue.dead' });
  const { taskId } = await observer.call({ action: 'enqueue', queue, task: 'crash', opts: { attempts: 2 } });
  for (let attempt = 1; attempt <= 2; attempt++) {
    const victim = await TestSocket.open(`${gw.busUrl}?name=victim-${attempt}`);
    await victim.call({ action: 'pull', queue });
    t.equal((await nextTask(victim)).attempts, attempt);
    victim.close();
  }
  const dead = (await observer.event('queue.dead')).event as Frame;
  t.same(dead.payload, { queue, taskId, attempts: 2, reason: 'worker disconnected' });
  const survivor = await open(gw.busUrl, 'survivor', t);
  await survivor.call({ action: 'pull', queue });
  t.ok(await survivor.nothing(isTask), 'it is not delivered a third time');
});

t.test('fail retries with backoff until attempts are spent, then dead; retried over REST it is delivered again', async (t) => {
  const gw = await gateway(t);
  const queue = freshQueue('render.page');
  const worker = await open(gw.busUrl, 'renderer', t);
  const observer = await open(gw.busUrl, 'dashboard', t);
  await observer.call({ action: 'subscribe', topic: 'queue.*' });
  const { taskId } = await worker.call({ action: 'enqueue', queue, task: { page: 1 }, opts: { attempts: 3, backoff: { type: 'fixed', delay: 300 } } });

  let failedAt = 0;
  for (let attempt = 1; attempt <= 3; attempt++) {
    await worker.call({ action: 'pull', queue });
    const task = await nextTask(worker, 3000);
    if (attempt > 1) t.ok(Date.now() - failedAt >= 300, `attempt ${attempt} waited out the backoff`);
    t.equal(task.id, taskId);
    t.equal(task.attempts, attempt);
    failedAt = Date.now();
    t.same(await worker.call({ action: 'fail', taskId, reason: `boom ${attempt}` }, `f${attempt}`), { ok: true, id: `f${attempt}` });
    const failed = (await observer.event('queue.failed')).event as Frame;
    t.same(failed.payload, { queue, taskId, attempts: attempt, reason: `boom ${attempt}` });
  }
  const dead = (await observer.event('queue.dead')).event as Frame;
  t.same(dead.payload, { queue, taskId, attempts: 3, reason: 'boom 3' });

  await worker.call({ action: 'pull', queue });
  t.ok(await worker.nothing(isTask), 'a dead task is not delivered');
  const { body } = await getJson(`${gw.httpUrl}/queues/${queue}`);
  t.match(body.counts, { waiting: 0, delayed: 0, failed: 1 });
  const deadTask = (body.tasks as Record<string, Frame[]>).failed?.[0] as Frame;
  t.match(deadTask, { id: taskId, state: 'failed', attempts: 3, maxAttempts: 3, failedReason: 'boom 3' });
  t.same(deadTask.reasons, ['boom 1', 'boom 2', 'boom 3'], 'every reason is kept');

  const retried = await post(`${gw.httpUrl}/queues/${queue}/tasks/${taskId}/retry`);
  t.same(retried, { status: 200, body: { ok: true, taskId, from: 'failed' } });
  const again = await nextTask(worker, 3000);
  t.equal(again.id, taskId, 'the pull that was waiting gets it');
  t.equal(again.attempts, 1, 'with a fresh set of attempts');
  await worker.call({ action: 'ack', taskId });
  t.match((await getJson(`${gw.httpUrl}/queues/${queue}`)).body.counts, { failed: 0, completed: 1 });
});

t.test('the default retry policy: 5 attempts, exponential backoff from QUEUE_BACKOFF_MS; per-queue overrides', async (t) => {
  const overridden = freshQueue('slow.lane');
  const gw = await gateway(t, { queueBackoffMs: 200, queueOverrides: { [overridden]: { attempts: 2 } } });
  const queue = freshQueue('default.lane');
  const worker = await open(gw.busUrl, 'w', t);
  const { taskId } = await worker.call({ action: 'enqueue', queue, task: null });
  const gaps: number[] = [];
  let last = Date.now();
  for (let attempt = 1; attempt <= 5; attempt++) {
    await worker.call({ action: 'pull', queue });
    const task = await nextTask(worker, 10_000);
    gaps.push(Date.now() - last);
    t.equal(task.attempts, attempt);
    t.equal(task.payload, null);
    await worker.call({ action: 'fail', taskId });
    last = Date.now();
  }
  t.ok((gaps[2] as number) >= 350 && (gaps[3] as number) >= 750, `delays double: ${gaps.join(', ')} ms`);
  const view = await getJson(`${gw.httpUrl}/queues/${queue}/tasks/${taskId}`);
  t.match(view.body, { state: 'failed', attempts: 5, maxAttempts: 5, failedReason: 'failed (no reason given)' });

  const other = await worker.call({ action: 'enqueue', queue: overridden, task: 1 });
  for (let attempt = 1; attempt <= 2; attempt++) {
    await worker.call({ action: 'pull', queue: overridden });
    await nextTask(worker, 5000);
    await worker.call({ action: 'fail', taskId: other.taskId, reason: 'x' });
  }
  t.match((await getJson(`${gw.httpUrl}/queues/${overridden}/tasks/${other.taskId}`)).body, { state: 'failed', maxAttempts: 2 });
});

t.test('replyTo: the requester gets the result, or the error once the task is dead, without polling', async (t) => {
  const gw = await gateway(t);
  const queue = freshQueue('llm.generate');
  const requester = await open(gw.busUrl, 'discord', t);
  const worker = await open(gw.busUrl, 'llm', t);
  await requester.call({ action: 'subscribe', topic: 'discord.replies' });
  const { taskId } = await requester.call({ action: 'enqueue', queue, task: { prompt: 'hi' }, opts: { replyTo: 'discord.replies' } });
  await worker.call({ action: 'pull', queue });
  await nextTask(worker);
  await worker.call({ action: 'ack', taskId, result: { text: 'hello there' } });
  const reply = (await requester.event('discord.replies')).event as Frame;
  t.match(reply, { type: 'discord.replies', source: 'llm', correlationId: taskId, payload: { text: 'hello there' } });

  const doomed = await requester.call({ action: 'enqueue', queue, task: {}, opts: { replyTo: 'discord.replies', attempts: 1 } });
  await worker.call({ action: 'pull', queue });
  await nextTask(worker);
  await worker.call({ action: 'fail', taskId: doomed.taskId, reason: 'model not loaded' });
  const error = (await requester.event('discord.replies')).event as Frame;
  t.match(error, { correlationId: doomed.taskId, payload: { error: 'model not loaded' } });
});

t.test('ack or fail of a task this connection does not hold: UNKNOWN_TASK and nothing changes', async (t) => {
  const gw = await gateway(t);
  const queue = freshQueue('tts.speak');
  const holder = await open(gw.busUrl, 'holder', t);
  const stranger = await open(gw.busUrl, 'stranger', t);
  const { taskId } = await holder.call({ action: 'enqueue', queue, task: 'x' });
  await holder.call({ action: 'pull', queue });
  await nextTask(holder);

  for (const action of ['ack', 'fail']) {
    const refused = await stranger.call({ action, taskId }, `s-${action}`);
    t.same(refused, { error: `task ${taskId} is not held by this connection`, code: 'UNKNOWN_TASK', id: `s-${action}` });
  }
  t.match(await stranger.call({ action: 'ack', taskId: 'no-such-task' }), { code: 'UNKNOWN_TASK' });
  t.match((await getJson(`${gw.httpUrl}/queues/${queue}`)).body.counts, { active: 1, completed: 0, failed: 0 });
  t.same(await holder.call({ action: 'ack', taskId }, 'h'), { ok: true, id: 'h' }, 'the holder still holds it');
  t.match(await holder.call({ action: 'ack', taskId }), { code: 'UNKNOWN_TASK' }, 'a second ack is refused');
  t.match((await getJson(`${gw.httpUrl}/queues/${queue}`)).body.counts, { active: 0, completed: 1 });
});

t.test('bad frames get clear errors and change nothing', async (t) => {
  const gw = await gateway(t);
  const ws = await open(gw.busUrl, 'w', t);
  const cases: [Frame, string][] = [
    [{ action: 'enqueue', queue: 'bad queue', task: 1 }, 'INVALID_QUEUE'],
    [{ action: 'enqueue', queue: 'a.*', task: 1 }, 'INVALID_QUEUE'],
    [{ action: 'enqueue', queue: 'a:b', task: 1 }, 'INVALID_QUEUE'],
    [{ action: 'enqueue', queue: 'x'.repeat(129), task: 1 }, 'INVALID_QUEUE'],
    [{ action: 'enqueue', task: 1 }, 'INVALID_FRAME'],
    [{ action: 'enqueue', queue: 'ok.q' }, 'INVALID_FRAME'],
    [{ action: 'enqueue', queue: 'ok.q', task: 1, opts: { attempts: 0 } }, 'INVALID_FRAME'],
    [{ action: 'enqueue', queue: 'ok.q', task: 1, opts: { priority: 1.5 } }, 'INVALID_FRAME'],
    [{ action: 'enqueue', queue: 'ok.q', task: 1, opts: { jobId: '42' } }, 'INVALID_FRAME'],
    [{ action: 'enqueue', queue: 'ok.q', task: 1, opts: { backoff: { type: 'random', delay: 1 } } }, 'INVALID_FRAME'],
    [{ action: 'enqueue', queue: 'ok.q', task: 1, opts: { lifo: true } }, 'INVALID_FRAME'],
    [{ action: 'enqueue', queue: 'ok.q', task: 1, opts: { replyTo: 'a.*' } }, 'INVALID_TOPIC'],
    [{ action: 'enqueue', queue: 'ok.q', task: 1, opts: 'fast' }, 'INVALID_FRAME'],
    [{ action: 'pull', queue: '' }, 'INVALID_QUEUE'],
    [{ action: 'pull', queue: 5 }, 'INVALID_FRAME'],
    [{ action: 'ack' }, 'INVALID_FRAME'],
    [{ action: 'fail', taskId: 'x', reason: { why: 1 } }, 'INVALID_FRAME'],
  ];
  for (const [frame, code] of cases) t.match(await ws.call(frame), { code }, JSON.stringify(frame).slice(0, 80));
  t.match((await getJson(`${gw.httpUrl}/queues/ok.q`)).body.counts, { waiting: 0 }, 'nothing was stored');
  ws.send({ action: 'ping', id: 'alive' });
  t.match(await ws.next((f) => 'pong' in f), { id: 'alive' }, 'the connection is still open');
});

t.test('opts: jobId makes enqueue idempotent; priority and delay are honoured', async (t) => {
  const gw = await gateway(t);
  const queue = freshQueue('mail.send');
  const ws = await open(gw.busUrl, 'w', t);
  const a = await ws.call({ action: 'enqueue', queue, task: { to: 'x' }, opts: { jobId: 'mail-7' } });
  const b = await ws.call({ action: 'enqueue', queue, task: { to: 'x' }, opts: { jobId: 'mail-7' } });
  t.equal(a.taskId, 'mail-7');
  t.equal(b.taskId, 'mail-7', 'the same id twice is one task');
  t.match((await getJson(`${gw.httpUrl}/queues/${queue}`)).body.counts, { waiting: 1 });

  await ws.call({ action: 'enqueue', queue, task: 'low', opts: { priority: 50 } });
  await ws.call({ action: 'enqueue', queue, task: 'high', opts: { priority: 1 } });
  const later = await ws.call({ action: 'enqueue', queue, task: 'later', opts: { delay: 500 } });
  t.match((await getJson(`${gw.httpUrl}/queues/${queue}`)).body.counts, { waiting: 3, delayed: 1 });
  const order: unknown[] = [];
  for (let i = 0; i < 3; i++) {
    await ws.call({ action: 'pull', queue });
    const task = await nextTask(ws);
    order.push(task.payload);
    await ws.call({ action: 'ack', taskId: task.id });
  }
  // BullMQ's order: tasks without a priority first, then prioritized ones, lowest number first.
  t.same(order, [{ to: 'x' }, 'high', 'low'], 'unprioritized, then priority 1, then 50');
  await ws.call({ action: 'pull', queue });
  const delayed = await nextTask(ws, 5000);
  t.equal(delayed.id, later.taskId, 'delivered once due, to the pull that was waiting');
});

t.test('enqueues sent together each get their own answer: a repeated id is one task, one Redis refuses fails alone', async (t) => {
  const gw = await gateway(t);
  const queue = freshQueue('mail.burst');
  const direct = new Redis(redis.url);
  t.teardown(() => direct.disconnect());
  // A key under a task's name that is no job hash: BullMQ's add of that id fails in Redis.
  await direct.set(`bull:${queue}:taken`, 'not a task');
  const ws = await open(gw.busUrl, 'producer', t);
  const sent = [
    { task: 1 }, { task: 2, opts: { jobId: 'mail-1' } }, { task: 3, opts: { jobId: 'taken' } },
    { task: 4, opts: { jobId: 'mail-1' } }, { task: 5, opts: { delay: 60_000 } }, { task: 6 },
  ];
  const receipts = await Promise.all(sent.map((frame, i) => ws.call({ action: 'enqueue', queue, ...frame }, i)));
  t.match(receipts, [
    { ok: true, id: 0, taskId: /^[0-9a-f-]{36}$/ }, { ok: true, id: 1, taskId: 'mail-1' }, { id: 2, code: 'UNAVAILABLE', error: /^the queue store \(Redis\) refused it: nothing was changed \(WRONGTYPE/ },
    { ok: true, id: 3, taskId: 'mail-1' }, { ok: true, id: 4 }, { ok: true, id: 5 },
  ]);
  t.match((await getJson(`${gw.httpUrl}/queues/${queue}`)).body.counts, { waiting: 3, delayed: 1 }, 'the others were stored, the repeated id once');
  const payloads: unknown[] = [];
  for (let i = 0; i < 3; i++) {
    await ws.call({ action: 'pull', queue });
    const task = await nextTask(ws);
    payloads.push(task.payload);
    await ws.call({ action: 'ack', taskId: task.id });
  }
  t.same(payloads, [1, 2, 6], 'in the order sent, the first task of the repeated id kept');
});

t.test('REST: enqueue (201), counts, pause and resume, remove, retry of what cannot be retried', async (t) => {
  const gw = await gateway(t);
  const queue = freshQueue('thumbs.make');
  const created = await post(`${gw.httpUrl}/queues/${queue}/tasks`, { task: { img: 1 }, opts: { attempts: 2 } });
  t.equal(created.status, 201);
  t.match(created.body, { ok: true, taskId: /^[0-9a-f-]{36}$/ });
  const second = await post(`${gw.httpUrl}/queues/${queue}/tasks`, { task: { img: 2 } });

  const listed = await getJson(`${gw.httpUrl}/queues`);
  t.equal(listed.status, 200);
  t.match((listed.body.queues as Frame[]).find((q) => q.name === queue), {
    name: queue, paused: false, pullers: [], counts: { waiting: 2, active: 0, delayed: 0, completed: 0, failed: 0 },
  });
  const detail = await getJson(`${gw.httpUrl}/queues/${queue}?limit=1`);
  t.equal((detail.body.tasks as Record<string, Frame[]>).waiting?.length, 1, 'a page of tasks per state');
  t.match((detail.body.tasks as Record<string, Frame[]>).waiting?.[0], { id: created.body.taskId, payload: { img: 1 }, state: 'waiting', maxAttempts: 2 });

  t.same(await post(`${gw.httpUrl}/queues/${queue}/pause`), { status: 200, body: { ok: true, name: queue, paused: true } });
  const worker = await open(gw.busUrl, 'thumbnailer', t);
  await worker.call({ action: 'pull', queue });
  t.ok(await worker.nothing(isTask), 'a paused queue delivers nothing');
  t.match((await getJson(`${gw.httpUrl}/queues/${queue}`)).body, { paused: true, counts: { waiting: 2 } });
  t.same(await post(`${gw.httpUrl}/queues/${queue}/resume`), { status: 200, body: { ok: true, name: queue, paused: false } });
  const task = await nextTask(worker, 7000);
  t.equal(task.id, created.body.taskId, 'resumed: the waiting pull gets its task');

  const removeActive = await fetch(`${gw.httpUrl}/queues/${queue}/tasks/${task.id}`, { method: 'DELETE' });
  t.equal(removeActive.status, 409);
  t.match(await removeActive.json(), { code: 'TASK_ACTIVE' });
  const removed = await fetch(`${gw.httpUrl}/queues/${queue}/tasks/${second.body.taskId}`, { method: 'DELETE' });
  t.same({ status: removed.status, body: await removed.json() }, { status: 200, body: { ok: true, taskId: second.body.taskId } });
  const gone = await fetch(`${gw.httpUrl}/queues/${queue}/tasks/${second.body.taskId}`, { method: 'DELETE' });
  t.same({ status: gone.status, body: await gone.json() }, {
    status: 404, body: { error: `no task ${second.body.taskId} in queue ${queue}`, code: 'UNKNOWN_TASK' },
  });
  t.match(await post(`${gw.httpUrl}/queues/${queue}/tasks/${task.id}/retry`), { status: 409, body: { code: 'TASK_ACTIVE' } });
  const waitingTask = await post(`${gw.httpUrl}/queues/${queue}/tasks`, { task: 3 });
  t.match(await post(`${gw.httpUrl}/queues/${queue}/tasks/${waitingTask.body.taskId}/retry`), { status: 409, body: { code: 'TASK_STATE' } });
  t.match(await post(`${gw.httpUrl}/queues/no.such.queue/tasks/x/retry`), { status: 404, body: { code: 'UNKNOWN_TASK' } });

  t.match(await post(`${gw.httpUrl}/queues/bad%20name/tasks`, { task: 1 }), { status: 400, body: { code: 'INVALID_QUEUE' } });
  t.match(await post(`${gw.httpUrl}/queues/${queue}/tasks`, { opts: {} }), { status: 400, body: { code: 'INVALID_FRAME' } });
  t.match(await post(`${gw.httpUrl}/queues/${queue}/tasks`, { task: 1, opts: { delay: -1 } }), { status: 400, body: { code: 'INVALID_FRAME' } });
  const unknown = await getJson(`${gw.httpUrl}/queues/never.used`);
  t.match(unknown, { status: 200, body: { name: 'never.used', counts: { waiting: 0 }, pullers: [] } });
});

t.test('rights: a token may enqueue and pull only the queues it names; REST mutations need admin', async (t) => {
  const tokens = { tts: 'tts-token-0123456789abcdef', ops: 'ops-token-0123456789abcdef' };
  const queue = freshQueue('generate.audio');
  const gw = await gateway(t, {
    edge: edgeConfig({ tokens: [tokenSpec('tts', tokens.tts, { queues: [queue] }), tokenSpec('ops', tokens.ops, { admin: true })] }),
  });
  const tts = await open(gw.busUrl, 'tts', t, `&token=${tokens.tts}`);
  t.match(await tts.call({ action: 'enqueue', queue: 'generate.text', task: 1 }), { code: 'FORBIDDEN' });
  t.match(await tts.call({ action: 'pull', queue: 'generate.text' }), { code: 'FORBIDDEN' });
  const { taskId } = await tts.call({ action: 'enqueue', queue, task: 1 });
  t.ok(taskId, 'its own queue works');
  await tts.call({ action: 'pull', queue });
  t.equal((await nextTask(tts)).id, taskId);

  const paused = await post(`${gw.httpUrl}/queues/${queue}/pause`, undefined, bearer(tokens.tts));
  t.match(paused, { status: 403, body: { code: 'FORBIDDEN' } });
  t.match(await post(`${gw.httpUrl}/queues/${queue}/pause`, undefined, bearer(tokens.ops)), { status: 200 });
  t.match(await post(`${gw.httpUrl}/queues/${queue}/resume`, undefined, bearer(tokens.ops)), { status: 200 });
});

t.test('a gateway that closes gives leased tasks back; the next one delivers them', async (t) => {
  const queue = freshQueue('long.job');
  const first = await gateway(t);
  const worker = await TestSocket.open(`${first.busUrl}?name=w`);
  const { taskId } = await worker.call({ action: 'enqueue', queue, task: 'keep me' });
  await worker.call({ action: 'pull', queue });
  await nextTask(worker);
  await first.app.close();
  worker.close();

  const second = await gateway(t);
  const view = await getJson(`${second.httpUrl}/queues/${queue}/tasks/${taskId}`);
  t.match(view.body, { state: 'waiting', attempts: 1, reasons: ['worker disconnected'] }, 'back in the queue, at once');
  const next = await open(second.busUrl, 'w2', t);
  await next.call({ action: 'pull', queue });
  const again = await nextTask(next);
  t.equal(again.id, taskId);
  t.equal(again.attempts, 2);
});

t.test('a gateway closes with pulls waiting on empty queues; a task enqueued next goes out on its first attempt', async (t) => {
  const queues = [freshQueue('close.waiting.a'), freshQueue('close.waiting.b')];
  const first = await gateway(t);
  const worker = await TestSocket.open(`${first.busUrl}?name=w`);
  for (const queue of queues) await worker.call({ action: 'pull', queue });
  await first.app.close();
  worker.close();

  const second = await gateway(t);
  const next = await open(second.busUrl, 'w2', t);
  const { taskId } = await next.call({ action: 'enqueue', queue: queues[0], task: 'after close' });
  await next.call({ action: 'pull', queue: queues[0] });
  const task = await nextTask(next);
  t.equal(task.id, taskId);
  t.equal(task.attempts, 1, 'the closed gateway\'s waiting fetches took nothing');
});

t.test('many workers, many tasks: each receipted task is delivered and acked exactly once', async (t) => {
  // 40 credits: more than the gateway fetches at once, so most acks also fetch the next task.
  const gw = await gateway(t);
  const queue = freshQueue('bulk');
  const producer = await open(gw.busUrl, 'producer', t);
  const workers = await Promise.all([1, 2, 3, 4].map((n) => open(gw.busUrl, `w${n}`, t)));
  const done = new Map<string, string>();
  const total = 400;
  for (const [index, worker] of workers.entries()) {
    worker.ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      if (!isTask(frame)) return;
      const task = taskOf(frame);
      if (done.has(task.id)) t.fail(`task ${task.id} delivered twice`);
      done.set(task.id, `w${index + 1}`);
      worker.send({ action: 'ack', taskId: task.id });
      worker.send({ action: 'pull', queue });
    });
    for (let i = 0; i < 10; i++) worker.send({ action: 'pull', queue });
  }
  const receipts = await Promise.all(Array.from({ length: total }, (_, i) => producer.call({ action: 'enqueue', queue, task: i }, `e${i}`)));
  await until(() => done.size === total, 20_000);
  t.same(new Set(done.keys()), new Set(receipts.map((r) => r.taskId)));
  const perWorker = [1, 2, 3, 4].map((n) => [...done.values()].filter((w) => w === `w${n}`).length);
  t.ok(perWorker.every((n) => n > total / 10), `work is spread: ${perWorker.join(' / ')}`);
  await until(async () => ((await getJson(`${gw.httpUrl}/queues/${queue}`)).body.counts as Frame).completed === total);
});
