import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket } from './helpers/test-socket.js';

// Progress, cancel, timeout and revoke over raw /bus frames and REST.
const redis = await startRedis(t);
const gw = await startGateway(t, { redisUrl: redis.url, queuePrefix: 'ctl' });

type Frame = Record<string, unknown>;

async function open(name: string): Promise<TestSocket> {
  const socket = await TestSocket.open(`${gw.busUrl}?name=${name}`);
  t.teardown(() => socket.close());
  return socket;
}

async function taskView(queue: string, id: unknown): Promise<Frame> {
  const res = await fetch(`${gw.httpUrl}/queues/${queue}/tasks/${String(id)}`);
  return await res.json() as Frame;
}

function cancelOverRest(queue: string, id: unknown, reason?: string): Promise<Response> {
  return fetch(`${gw.httpUrl}/queues/${queue}/tasks/${String(id)}/cancel`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(reason ? { reason } : {}),
  });
}

async function pullOne(worker: TestSocket, queue: string): Promise<Frame> {
  worker.send({ action: 'pull', queue });
  const { task } = await worker.next((f) => 'task' in f) as { task: Frame };
  return task;
}

t.test('progress reaches queue.progress and REPLYTO.progress, and shows in the task view with its holder', async (t) => {
  const requester = await open('requester-1');
  const worker = await open('renderer-1');
  const other = await open('bystander-1');
  t.same((await requester.call({ action: 'subscribe', topic: 'render.reply.>' })).ok, true);
  t.same((await requester.call({ action: 'subscribe', topic: 'queue.progress' })).ok, true);
  const { taskId } = await requester.call({ action: 'enqueue', queue: 'render.video', task: { frames: 100 }, opts: { replyTo: 'render.reply.1' } });
  const task = await pullOne(worker, 'render.video');
  t.equal(task.id, taskId);
  t.same((await worker.call({ action: 'progress', taskId, progress: { done: 40 } })).ok, true);
  const followed = await requester.event('queue.progress') as { event: Frame };
  t.same(followed.event.payload, { queue: 'render.video', taskId, progress: { done: 40 } });
  const reply = await requester.event('render.reply.1.progress') as { event: Frame };
  t.same(reply.event.payload, { done: 40 });
  t.equal(reply.event.correlationId, taskId);
  const view = await taskView('render.video', taskId);
  t.equal(view.state, 'active');
  t.same(view.progress, { done: 40 });
  t.equal(view.holder, 'renderer-1');
  const stranger = await other.call({ action: 'progress', taskId, progress: 99 });
  t.equal(stranger.code, 'UNKNOWN_TASK', 'only the holder reports progress');
  t.same((await worker.call({ action: 'ack', taskId, result: 'ok' })).ok, true);
  const done = await taskView('render.video', taskId);
  t.equal(done.holder, null);
  t.same(done.progress, { done: 40 }, 'the last progress stays');
});

t.test('cancel a waiting task: never delivered, cancelled, queue.cancelled and {"error":"cancelled"} on its replyTo', async (t) => {
  const requester = await open('requester-2');
  const worker = await open('worker-2');
  t.same((await requester.call({ action: 'subscribe', topic: 'tts.reply' })).ok, true);
  t.same((await requester.call({ action: 'subscribe', topic: 'queue.cancelled' })).ok, true);
  const first = await requester.call({ action: 'enqueue', queue: 'tts.speak', task: 'unwanted', opts: { replyTo: 'tts.reply' } });
  t.same((await requester.call({ action: 'cancel', queue: 'tts.speak', taskId: first.taskId, reason: 'user left' })).ok, true);
  const cancelled = await requester.event('queue.cancelled') as { event: Frame };
  t.same(cancelled.event.payload, { queue: 'tts.speak', taskId: first.taskId, reason: 'user left' });
  const reply = await requester.event('tts.reply') as { event: Frame };
  t.same(reply.event.payload, { error: 'cancelled' });
  t.equal(reply.event.correlationId, first.taskId);
  const view = await taskView('tts.speak', first.taskId);
  t.equal(view.state, 'cancelled');
  t.equal(view.failedReason, 'user left');
  // The next task enqueued is the one delivered: the cancelled one is gone.
  const second = await requester.call({ action: 'enqueue', queue: 'tts.speak', task: 'wanted' });
  const task = await pullOne(worker, 'tts.speak');
  t.equal(task.id, second.taskId);
  t.same((await worker.call({ action: 'ack', taskId: task.id })).ok, true);
  const again = await requester.call({ action: 'cancel', queue: 'tts.speak', taskId: first.taskId });
  t.equal(again.code, 'UNKNOWN_TASK', 'cancelling a cancelled task');
  t.equal((await cancelOverRest('tts.speak', first.taskId)).status, 409);
});

t.test('cancel a delayed task over REST: 200 with its view', async (t) => {
  const requester = await open('requester-3');
  const { taskId } = await requester.call({ action: 'enqueue', queue: 'later.q', task: 1, opts: { delay: 60_000 } });
  const res = await cancelOverRest('later.q', taskId);
  t.equal(res.status, 200);
  const view = await res.json() as Frame;
  t.equal(view.state, 'cancelled');
  t.equal(view.id, taskId);
  const counts = (await (await fetch(`${gw.httpUrl}/queues/later.q`)).json() as { counts: Frame }).counts;
  t.equal(counts.delayed, 0, 'no longer delayed');
});

t.test('cancel an active task: its holder gets revoke, its later ack is UNKNOWN_TASK, no retry, the requester gets the error', async (t) => {
  const requester = await open('requester-4');
  const worker = await open('worker-4');
  t.same((await requester.call({ action: 'subscribe', topic: 'think.reply' })).ok, true);
  const { taskId } = await requester.call({ action: 'enqueue', queue: 'agent.think', task: 'long', opts: { replyTo: 'think.reply', attempts: 3 } });
  await pullOne(worker, 'agent.think');
  t.equal((await taskView('agent.think', taskId)).holder, 'worker-4');
  t.same((await requester.call({ action: 'cancel', queue: 'agent.think', taskId })).ok, true);
  const revoke = await worker.next((f) => 'revoke' in f);
  t.same(revoke.revoke, { taskId, queue: 'agent.think', reason: 'cancelled' });
  const late = await worker.call({ action: 'ack', taskId, result: 'too late' });
  t.equal(late.code, 'UNKNOWN_TASK');
  t.equal((await worker.call({ action: 'progress', taskId, progress: 1 })).code, 'UNKNOWN_TASK');
  const reply = await requester.event('think.reply') as { event: Frame };
  t.same(reply.event.payload, { error: 'cancelled' });
  const view = await taskView('agent.think', taskId);
  t.equal(view.state, 'cancelled');
  // Not retried: the next delivery is a task enqueued after the cancel.
  const next = await requester.call({ action: 'enqueue', queue: 'agent.think', task: 'next' });
  const task = await pullOne(worker, 'agent.think');
  t.equal(task.id, next.taskId);
});

t.test('cancel a completed task: 409 over REST, UNKNOWN_TASK on the bus; an unknown one: 404', async (t) => {
  const requester = await open('requester-5');
  const worker = await open('worker-5');
  const { taskId } = await requester.call({ action: 'enqueue', queue: 'done.q', task: 1 });
  const task = await pullOne(worker, 'done.q');
  t.same((await worker.call({ action: 'ack', taskId: task.id })).ok, true);
  const res = await cancelOverRest('done.q', taskId);
  t.equal(res.status, 409);
  t.equal(((await res.json()) as Frame).code, 'TASK_STATE');
  t.equal((await requester.call({ action: 'cancel', queue: 'done.q', taskId })).code, 'UNKNOWN_TASK');
  t.equal((await cancelOverRest('done.q', 'no-such-task')).status, 404);
  t.equal((await requester.call({ action: 'cancel', queue: 'done.q', taskId: 'no-such-task' })).code, 'UNKNOWN_TASK');
});

t.test('a task held past its timeout is revoked and retried, then dead with reason timeout', async (t) => {
  const requester = await open('requester-6');
  const worker = await open('sleeper-6');
  t.same((await requester.call({ action: 'subscribe', topic: 'queue.dead' })).ok, true);
  const bad = await requester.call({ action: 'enqueue', queue: 'slow.q', task: 1, opts: { timeout: 0 } });
  t.equal(bad.code, 'INVALID_FRAME', 'a timeout must be a positive whole number of ms');
  const { taskId } = await requester.call({ action: 'enqueue', queue: 'slow.q', task: 1, opts: { timeout: 300, attempts: 2, backoff: 0 } });
  for (const attempt of [1, 2]) {
    const task = await pullOne(worker, 'slow.q');
    t.equal(task.attempts, attempt);
    const started = Date.now();
    const revoke = await worker.next((f) => 'revoke' in f, 3000);
    t.same(revoke.revoke, { taskId, queue: 'slow.q', reason: 'timeout' });
    t.ok(Date.now() - started >= 250, `revoked after its timeout (${Date.now() - started} ms)`);
    t.equal((await worker.call({ action: 'ack', taskId })).code, 'UNKNOWN_TASK', 'the sleeper\'s late ack');
  }
  const dead = await requester.event('queue.dead') as { event: Frame };
  t.same(dead.event.payload, { queue: 'slow.q', taskId, attempts: 2, reason: 'timeout' });
  const view = await taskView('slow.q', taskId);
  t.equal(view.state, 'failed');
  t.same(view.reasons, ['timeout', 'timeout']);
  t.equal(view.failedReason, 'timeout');
});

t.test('brainstem task and brainstem cancel', async (t) => {
  const { brainstem } = await import('./helpers/cli.js');
  const requester = await open('requester-7');
  const { taskId } = await requester.call({ action: 'enqueue', queue: 'cli.q', task: { n: 7 } });
  const shown = await brainstem(['task', 'cli.q', String(taskId), '--url', gw.httpUrl]);
  t.equal(shown.code, 0, shown.stderr);
  t.match(JSON.parse(shown.stdout), { id: taskId, state: 'waiting', payload: { n: 7 } });
  const cancelled = await brainstem(['cancel', 'cli.q', String(taskId), '--url', gw.httpUrl]);
  t.equal(cancelled.code, 0, cancelled.stderr);
  t.equal((JSON.parse(cancelled.stdout) as Frame).state, 'cancelled');
  const again = await brainstem(['cancel', 'cli.q', String(taskId), '--url', gw.httpUrl]);
  t.equal(again.code, 1);
  t.match(again.stderr, /answered 409: task .* is already cancelled/);
});
