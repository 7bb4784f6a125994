import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { newestFirst } from './helpers/closers.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket } from './helpers/test-socket.js';

// Names that break the one name rule (src/protocol/names.ts), on every
// surface that takes a name; and the two frames that used to end the process.
const closing = newestFirst(t);
const redis = await startRedis(closing);
const PREFIX = 'bsq';
const gw = await startGateway(closing, { redisUrl: redis.url, queuePrefix: PREFIX });
const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
closing.teardown(() => connection.disconnect());

async function socket(): Promise<TestSocket> {
  const opened = await TestSocket.open(gw.busUrl);
  t.teardown(() => opened.close());
  return opened;
}

t.test('the two frames of the report are refused, and the gateway keeps serving', async (t) => {
  const ws = await socket();
  // Sent as text with the JSON escape, as the fuzzer sent them.
  ws.send('{"action":"enqueue","queue":"q.\\ud800","task":"x","id":1}');
  ws.send('{"action":"pull","queue":"q.\\ud800","id":2}');
  const first = await ws.next((f) => f.id === 1);
  const second = await ws.next((f) => f.id === 2);
  t.equal(first.code, 'INVALID_QUEUE');
  t.match(first.error, /queue holds a lone surrogate/);
  t.equal(second.code, 'INVALID_QUEUE');
  const receipt = await ws.call({ action: 'enqueue', queue: 'q.after', task: 'still here' });
  t.equal(receipt.ok, true, 'the same connection enqueues after it');
  t.same(await connection.keys(`${PREFIX}:q.\ufffd*`), [], 'nothing was stored under the folded name');
});

t.test('U+FFFD is a character of its own: names.\\ufffd and a lone surrogate never share a queue', async (t) => {
  const ws = await socket();
  const enqueued = await ws.call({ action: 'enqueue', queue: 'names.\ufffd', task: 'replacement' });
  t.equal(enqueued.ok, true);
  const refused = await ws.call({ action: 'pull', queue: 'names.\ud800' });
  t.equal(refused.code, 'INVALID_QUEUE', 'the lone surrogate is refused, not folded into U+FFFD');
  ws.send({ action: 'pull', queue: 'names.\ufffd' });
  const { task } = await ws.next((f) => 'task' in f) as { task: Record<string, unknown> };
  t.equal(task.queue, 'names.\ufffd');
  t.equal(task.payload, 'replacement');
  t.equal(task.attempts, 1);
  t.equal((await ws.call({ action: 'ack', taskId: task.id })).ok, true);
});

t.test('names are measured in UTF-8 bytes and never cut', async (t) => {
  const ws = await socket();
  const e128 = 'q.' + 'é'.repeat(63); // 2 + 126 = 128 bytes
  t.equal((await ws.call({ action: 'enqueue', queue: e128, task: 1 })).ok, true, 'a queue name of 128 bytes');
  const e130 = 'q.' + 'é'.repeat(64); // 66 characters, 130 bytes
  const over = await ws.call({ action: 'enqueue', queue: e130, task: 1 });
  t.equal(over.code, 'INVALID_QUEUE');
  t.match(over.error, /130 bytes in UTF-8, more than 128/);
  const topic256 = 'a.' + '😀'.repeat(63) + 'xx'; // 2 + 252 + 2 = 256 bytes
  t.equal((await ws.call({ action: 'subscribe', topic: topic256 })).ok, true, 'a topic of 256 bytes');
  const topic257 = topic256 + 'x';
  t.equal((await ws.call({ action: 'subscribe', topic: topic257 })).code, 'INVALID_TOPIC');
});

t.test('control characters and lone surrogates are refused in every field that names something', async (t) => {
  const ws = await socket();
  const cases: [string, string, string][] = [
    ['{"action":"publish","message":{"type":"a.\\u0000"}}', 'INVALID_TOPIC', 'message.type holds the control character U+0000'],
    ['{"action":"publish","message":{"type":"a.\\u0085b"}}', 'INVALID_TOPIC', 'control character U+0085'],
    ['{"action":"subscribe","topic":"a.\\udc00"}', 'INVALID_TOPIC', 'topic holds a lone surrogate'],
    ['{"action":"publish","message":{"type":"a.b","msgId":"m\\ud800"}}', 'INVALID_FRAME', 'message.msgId'],
    ['{"action":"publish","message":{"type":"a.b","replyTo":"r.\\u007f"}}', 'INVALID_TOPIC', 'message.replyTo'],
    ['{"action":"enqueue","queue":"q.ok","task":1,"opts":{"jobId":"j\\ud800"}}', 'INVALID_FRAME', 'opts.jobId'],
    ['{"action":"enqueue","queue":"q.ok","task":1,"opts":{"replyTo":"r\\u0001"}}', 'INVALID_TOPIC', 'opts.replyTo'],
    ['{"action":"ack","taskId":"t\\ud800"}', 'INVALID_FRAME', 'taskId holds a lone surrogate'],
    ['{"action":"fail","taskId":"t\\u0000"}', 'INVALID_FRAME', 'taskId holds the control character'],
    ['{"action":"cancel","queue":"q.ok","taskId":"\\udfff"}', 'INVALID_FRAME', 'taskId'],
  ];
  let n = 0;
  for (const [frame, code, message] of cases) {
    const id = `c${++n}`;
    ws.send(frame.replace(/}$/, `,"id":"${id}"}`));
    const answer = await ws.next((f) => f.id === id);
    t.equal(answer.code, code, frame);
    t.match(answer.error, message, frame);
  }
  t.same(await connection.keys(`${PREFIX}:q.ok:*`), [], 'nothing was enqueued by the refused frames');
});

t.test('a /bus name that breaks the rule is refused before the upgrade, not cut', async (t) => {
  const long = 'n'.repeat(201);
  const answer = await fetch(`${gw.httpUrl}/bus?name=${long}`);
  t.equal(answer.status, 400);
  t.match(await answer.json(), { code: 'INVALID_FRAME', error: /name is longer than 200 bytes/ });
  const control = await fetch(`${gw.httpUrl}/bus?name=svc%07`);
  t.equal(control.status, 400);
  const ok = await TestSocket.open(`${gw.busUrl}?name=${'n'.repeat(200)}`);
  t.teardown(() => ok.close());
  t.pass('a name of 200 bytes connects');
});

t.test('REST paths and heartbeat bodies obey the same rule', async (t) => {
  const badQueue = await fetch(`${gw.httpUrl}/queues/q.%01x`);
  t.equal(badQueue.status, 400);
  t.match(await badQueue.json(), { code: 'INVALID_QUEUE' });
  const badTask = await fetch(`${gw.httpUrl}/queues/q.ok/tasks/t%00`);
  t.equal(badTask.status, 400);
  t.match(await badTask.json(), { code: 'INVALID_FRAME', error: /id holds the control character U\+0000/ });
  const enqueue = await fetch(`${gw.httpUrl}/queues/q.ok/tasks`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"task":1,"opts":{"jobId":"\\ud83d"}}',
  });
  t.equal(enqueue.status, 400);
  for (const name of ['"svc\\ud800"', '"svc\\u0000"', `"${'s'.repeat(201)}"`]) {
    const beat = await fetch(`${gw.httpUrl}/heartbeat`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"pid":${process.pid},"name":${name}}`,
    });
    t.equal(beat.status, 400, `beat named ${name.slice(0, 20)}`);
    t.match(await beat.json(), { code: 'INVALID_FRAME' });
  }
  // Found by the fuzzer: `meta` read as a task parsed the queue's own hash (500).
  await fetch(`${gw.httpUrl}/queues/q.reserved/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"task":1}' });
  for (const suffix of ['meta', 'events', 'wait', 'id', 'active']) {
    const reserved = await fetch(`${gw.httpUrl}/queues/q.reserved/tasks/${suffix}`);
    t.equal(reserved.status, 404, `GET …/tasks/${suffix}`);
    t.match(await reserved.json(), { code: 'UNKNOWN_TASK' });
  }
  const health = await fetch(`${gw.httpUrl}/health`);
  t.equal(health.status, 200);
});

t.test('a task the gateway cannot read is failed with its reason, and the queue goes on', async (t) => {
  const queue = new Queue('poison', { connection, prefix: PREFIX });
  closing.teardown(() => queue.close());
  const unreadableData = await queue.add('x', { ok: 1 });
  await connection.hset(`${PREFIX}:poison:${unreadableData.id}`, 'data', '{not json');
  const unreadableOpts = await queue.add('x', { ok: 2 });
  await connection.hset(`${PREFIX}:poison:${unreadableOpts.id}`, 'opts', '{"attempts":');
  const noTimestamp = await queue.add('x', { ok: 3 });
  await connection.hset(`${PREFIX}:poison:${noTimestamp.id}`, 'timestamp', 'soon');
  const foreignTimeout = await queue.add('x', { ok: 4 }, { timeout: 1e308 } as never);
  const foreignReplyTo = await queue.add('x', { ok: 6 }, { replyTo: 'no spaces allowed' } as never);
  const gone = await queue.add('x', { ok: 5 });
  await connection.del(`${PREFIX}:poison:${gone.id}`);
  const good = await queue.add('x', { ok: 'good' });

  const ws = await socket();
  ws.send({ action: 'pull', queue: 'poison' });
  const { task } = await ws.next((f) => 'task' in f, 15_000) as { task: Record<string, unknown> };
  t.equal(task.id, good.id, 'the one readable task is the one delivered');
  t.same(task.payload, { ok: 'good' });

  const reasons = new Map<string, string>();
  for (const job of [unreadableData, unreadableOpts, noTimestamp, foreignTimeout, foreignReplyTo]) {
    const stored = await queue.getJob(job.id as string);
    t.equal(await stored?.getState(), 'failed', `job ${job.id} is failed, not looping`);
    reasons.set(job.id as string, stored?.failedReason ?? '');
  }
  t.match(reasons.get(unreadableData.id as string), /undeliverable: its data is not JSON/);
  t.match(reasons.get(unreadableOpts.id as string), /undeliverable: BullMQ could not read it .*not JSON: opts/);
  t.match(reasons.get(noTimestamp.id as string), /undeliverable: its hash is gone or has no readable timestamp/);
  t.match(reasons.get(foreignTimeout.id as string), /opts.timeout 1e\+308 cannot be honoured/);
  t.match(reasons.get(foreignReplyTo.id as string), /undeliverable: opts.replyTo is not a valid topic/);
  t.equal(await connection.hget(`${PREFIX}:poison:${unreadableData.id}`, 'unreadable:data'), '{not json', 'the unreadable data is kept');
  t.equal(await connection.hget(`${PREFIX}:poison:${unreadableOpts.id}`, 'unreadable:opts'), '{"attempts":', 'the unreadable opts are kept');
  t.notOk((await connection.lrange(`${PREFIX}:poison:active`, 0, -1)).includes(gone.id as string), 'the job without a hash left the active list');
  const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text();
  t.match(metrics, /brainstem_queue_undeliverable_total\{queue="poison"\} 6/);
  t.equal((await ws.call({ action: 'ack', taskId: task.id })).ok, true);
});
