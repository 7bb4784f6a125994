import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { startRestartableGateway } from './helpers/restartable-gateway.js';
import { TestSocket, until } from './helpers/test-socket.js';
import { startDriver } from './python/python-process.js';

type Frame = Record<string, unknown>;

async function enqueueAll(socket: TestSocket, queue: string, tasks: unknown[], opts?: Frame): Promise<string[]> {
  const receipts = await Promise.all(tasks.map((task) => socket.call(opts ? { action: 'enqueue', queue, task, opts } : { action: 'enqueue', queue, task })));
  return receipts.map((r) => {
    if (r.ok !== true) throw new Error(`enqueue refused: ${JSON.stringify(r)}`);
    return r.taskId as string;
  });
}

async function getJson(url: string): Promise<Frame> {
  const response = await fetch(url);
  return (await response.json()) as Frame;
}

t.test('work with concurrency 5: started on an empty queue, never more than 5 in hand, each task once', async (t) => {
  const gw = await startGateway(t);
  const py = await startDriver(t, gw.busUrl, 'py-worker');
  await py.call({ op: 'work', queue: 'transcribe.audio', concurrency: 5, delay: 0.05 });
  const pullers = async () => ((await getJson(`${gw.httpUrl}/queues/transcribe.audio`)).pullers ?? []) as Frame[];
  await until(async () => (await pullers())[0]?.credits === 5);
  t.equal((await pullers())[0]?.name, 'py-worker', 'five pulls wait on the empty queue');

  const producer = await TestSocket.open(gw.busUrl);
  t.teardown(() => producer.close());
  await producer.call({ action: 'subscribe', topic: 'stt.result' });
  await producer.call({ action: 'subscribe', topic: 'queue.failed' });
  const ids = await enqueueAll(producer, 'transcribe.audio', Array.from({ length: 40 }, (_, i) => ({ url: `file:///${i}.wav` })));
  const [withReply] = await enqueueAll(producer, 'transcribe.audio', [{ url: 'file:///reply.wav' }], { replyTo: 'stt.result' });

  const done: unknown[] = [];
  for (let i = 0; i < 41; i++) done.push((await py.next((l) => 'done' in l)).done);
  t.same(done.sort(), [...ids, withReply].sort(), 'every task processed');
  const started = py.take((l) => 'started' in l);
  t.ok(started.every((l) => (l.inHand as number) <= 5), 'never more than 5 in hand');
  t.equal((await py.call({ op: 'status' })).maxInHand, 5, 'and 5 at once while the queue was full');

  const reply = (await producer.event('stt.result')).event as Frame;
  t.equal(reply.correlationId, withReply, "the handler's return value is the result published to replyTo");
  t.same(reply.payload, { processedBy: 'py-worker' });

  await until(async () => ((await getJson(`${gw.httpUrl}/queues/transcribe.audio`)).counts as Frame).completed === 41);
  const stopped = await py.call({ op: 'stop_work', queue: 'transcribe.audio' });
  t.equal(stopped.processed, 41, 'and each once');
  t.equal(stopped.failed, 0);
  // The protocol cannot take a pull back: the stopped worker's pulls stay
  // granted until its connection closes, and a task that still comes is
  // failed back at once (as the TypeScript client does), not processed.
  const [late] = await enqueueAll(producer, 'transcribe.audio', [{ url: 'file:///late.wav' }]);
  const handedBack = (await producer.next((f) => (f.event as Frame | undefined)?.type === 'queue.failed')).event as Frame;
  t.match(handedBack.payload, { taskId: late, reason: 'worker stopped' }, 'a task granted to a stopped worker is failed back');
  t.same(py.take((l) => l.started === late), [], 'and not processed');
  await py.call({ op: 'close' });
  await until(async () => (await pullers()).length === 0);
  t.pass('closing the client ends its pulls');
});

t.test('a sync handler works too', async (t) => {
  const gw = await startGateway(t);
  const producer = await TestSocket.open(gw.busUrl);
  t.teardown(() => producer.close());
  const ids = await enqueueAll(producer, 'sync.q', [{ n: 1 }, { n: 2 }, { n: 3 }]);
  const py = await startDriver(t, gw.busUrl, 'py-sync');
  await py.call({ op: 'work', queue: 'sync.q', concurrency: 2, sync: true, delay: 0.01 });
  const done = [];
  for (let i = 0; i < 3; i++) done.push((await py.next((l) => 'done' in l)).done);
  t.same(done.sort(), [...ids].sort());
});

t.test('a handler that raises: the task is retried, then dead-lettered with the message', async (t) => {
  const gw = await startGateway(t);
  const watcher = await TestSocket.open(gw.busUrl);
  t.teardown(() => watcher.close());
  await watcher.call({ action: 'subscribe', topic: 'queue.dead' });
  const py = await startDriver(t, gw.busUrl, 'py-flaky');
  await py.call({ op: 'work', queue: 'agent.think', concurrency: 1, fail: true });
  const [taskId] = await enqueueAll(watcher, 'agent.think', [{ prompt: 'hi' }], { attempts: 3, backoff: { type: 'fixed', delay: 100 } });

  const attempts = [];
  for (let i = 0; i < 3; i++) attempts.push((await py.next((l) => l.raising === taskId)).attempts);
  t.same(attempts, [1, 2, 3], 'delivered three times, attempts counted');
  const dead = (await watcher.event('queue.dead')).event as Frame;
  t.same(dead.payload, { queue: 'agent.think', taskId, attempts: 3, reason: `cannot process ${taskId}` });
  const task = await getJson(`${gw.httpUrl}/queues/agent.think/tasks/${taskId}`);
  t.equal(task.state, 'failed', 'in the dead letters');
  t.equal(task.failedReason, `cannot process ${taskId}`);
  // Barrier: a task enqueued after it is the next one the worker gets.
  const [later] = await enqueueAll(watcher, 'agent.think', [{ prompt: 'later' }], { attempts: 1 });
  t.equal((await py.next((l) => 'raising' in l)).raising, later, 'the dead task is not delivered again');
});

t.test('Python enqueues, TypeScript pulls; pull/on_task/ack by hand; gateway errors arrive with their code', async (t) => {
  const gw = await startGateway(t);
  const py = await startDriver(t, gw.busUrl, 'py-cephalon');
  const { taskId } = await py.call({ op: 'enqueue', queue: 'generate.audio', task: { text: 'hello' }, opts: { priority: 1 } });
  t.match(taskId, /\S/, 'enqueue returns the taskId of the receipt');
  const ts = await TestSocket.open(gw.busUrl);
  t.teardown(() => ts.close());
  ts.send({ action: 'pull', queue: 'generate.audio' });
  const { task } = await ts.next((f) => 'task' in f) as { task: Frame };
  t.equal(task.id, taskId);
  t.same(task.payload, { text: 'hello' });

  await py.call({ op: 'pull', queue: 'seed.style' });
  const [handMade] = await enqueueAll(ts, 'seed.style', ['payload']);
  const delivered = (await py.next((l) => 'task' in l)).task as Frame;
  t.equal(delivered.id, handMade, 'a pull opened on an empty queue is answered when a task comes');
  t.equal((await py.call({ op: 'ack', taskId: handMade, result: { ok: 1 } })).settled, true);

  const badOpts = await py.call({ op: 'enqueue', queue: 'generate.audio', task: {}, opts: { attempts: 'many' } }).catch((e: Frame) => e);
  t.equal(badOpts.kind, 'BrokerError');
  t.equal(badOpts.code, 'INVALID_FRAME');
  const unknown = await py.call({ op: 'ack', taskId: 'no-such-task' }).catch((e: Frame) => e);
  t.equal(unknown.code, 'UNKNOWN_TASK');
  t.equal((await py.call({ op: 'ping' })).pong !== undefined, true, 'the connection is still usable');
});

t.test('the gateway restarts mid-stream: no receipted task is lost', async (t) => {
  const gw = await startRestartableGateway(t, { queueLeaseMs: 2000, queueStalledCheckMs: 500 });
  const worker = await startDriver(t, gw.busUrl, 'py-worker');
  const producer = await startDriver(t, gw.busUrl, 'py-producer');
  await worker.call({ op: 'work', queue: 'stream.q', concurrency: 4, delay: 0.005 });
  const produced = producer.call({ op: 'produce', queue: 'stream.q', count: 200, interval: 0.003 }, 60_000);

  const receipted = new Set<string>();
  const done = new Set<string>();
  let deliveries = 0;
  const collect = () => {
    for (const l of producer.take((l) => 'receipted' in l)) receipted.add(l.receipted as string);
    for (const l of worker.take((l) => 'done' in l)) {
      done.add(l.done as string);
      deliveries++;
    }
  };
  await until(() => { collect(); return receipted.size >= 50; }, 20_000);
  await gw.restart(300);
  const answer = await produced;
  t.equal(answer.produced, 200);
  collect();
  const afterRestart = producer.all.filter((l) => 'receipted' in l).slice(-1)[0];
  t.equal(afterRestart?.i, 199, 'the producer went on after the restart');

  await until(() => { collect(); return [...receipted].every((id) => done.has(id)); }, 30_000);
  const unreceipted = producer.all.filter((l) => 'unreceipted' in l);
  t.ok(receipted.size + unreceipted.length === 200, `${receipted.size} receipted, ${unreceipted.length} not (${JSON.stringify(unreceipted.map((l) => l.code))})`);
  t.ok(receipted.size >= 190, 'almost every enqueue was receipted across the restart');
  t.pass(`every one of the ${receipted.size} receipted tasks was processed (${deliveries - done.size} processed twice: at-least-once)`);
  t.ok(worker.all.some((l) => l.disconnected === 1001), 'the worker saw the gateway go away');
  t.ok(producer.all.filter((l) => 'connected' in l).length >= 2, 'and the clients came back');
});
