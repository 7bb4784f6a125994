import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { BrokerClient, BrokerError, type Task } from '../src/client/index.js';
import { startGateway } from './helpers/gateway.js';
import { startRestartableGateway } from './helpers/restartable-gateway.js';
import { until } from './helpers/test-socket.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

interface Puller { name: string; credits: number; leased: number }

function client(t: Teardown, url: string, options: ConstructorParameters<typeof BrokerClient>[0] = {}): BrokerClient {
  const c = new BrokerClient({ url, ...options });
  t.teardown(() => c.close());
  return c;
}


async function pullersOf(httpUrl: string, queue: string): Promise<Puller[]> {
  const response = await fetch(`${httpUrl}/queues/${queue}`);
  return ((await response.json()) as { pullers?: Puller[] }).pullers ?? [];
}

t.test('enqueue resolves with the taskId once stored; a refusal rejects with its code', async (t) => {
  const gw = await startGateway(t);
  const c = client(t, gw.busUrl, { id: 'cephalon' });
  await c.connect();
  const taskId = await c.enqueue('agent.think', { input: 'hello' });
  t.type(taskId, 'string');
  t.ok(taskId.length > 0);
  const named = await c.enqueue('agent.think', { input: 'again' }, { jobId: 'think-1', priority: 2 });
  t.equal(named, 'think-1', 'the jobId option names the task');
  let refused: BrokerError | undefined;
  try {
    await c.enqueue('agent.think', {}, { attempts: 0 });
  } catch (err) {
    refused = err as BrokerError;
  }
  t.equal(refused?.code, 'INVALID_FRAME', 'the gateway refused the options');
  t.match(refused?.message, /attempts/);
});

t.test('work with concurrency 5 processes 500 tasks and never holds more than 5', async (t) => {
  const gw = await startGateway(t);
  const producer = client(t, gw.busUrl, { id: 'producer' });
  const worker = client(t, gw.busUrl, { id: 'worker' });
  await producer.connect();
  await worker.connect();
  const ids = await Promise.all(Array.from({ length: 500 }, (_, n) => producer.enqueue('bulk.job', { n })));
  t.equal(new Set(ids).size, 500);

  let running = 0;
  let mostRunning = 0;
  const seen = new Map<string, number>();
  const handle = worker.work('bulk.job', async (task: Task) => {
    running++;
    mostRunning = Math.max(mostRunning, running);
    await sleep(Math.random() * 3);
    seen.set(task.id, (task.payload as { n: number }).n);
    running--;
    return { doubled: (task.payload as { n: number }).n * 2 };
  }, { concurrency: 5 });

  // What the gateway sees: credits (open pulls) plus leased tasks of this connection.
  let mostHeld = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      for (const p of await pullersOf(gw.httpUrl, 'bulk.job')) {
        if (p.name === 'worker') mostHeld = Math.max(mostHeld, p.leased + p.credits, p.leased);
      }
      await sleep(15);
    }
  })();
  await until(() => handle.acked === 500, 30_000);
  sampling = false;
  await sampler;
  t.equal(seen.size, 500, 'every task ran');
  t.same([...ids].sort(), [...seen.keys()].sort(), 'the tasks enqueued are the tasks processed');
  t.equal(mostRunning, 5, 'five at a time, never more');
  t.ok(mostHeld <= 5, `the gateway never saw more than 5 held by the worker (max ${mostHeld})`);
  await handle.stop();
  t.notOk(handle.running);
  const counts = ((await (await fetch(`${gw.httpUrl}/queues/bulk.job`)).json()) as { counts: Record<string, number> }).counts;
  t.equal(counts.completed, 500);
  t.equal(counts.active, 0);
  t.equal(counts.waiting, 0);
});

t.test('a throwing handler fails the task with its message; the retry succeeds', async (t) => {
  const gw = await startGateway(t);
  const c = client(t, gw.busUrl, { id: 'flaky' });
  await c.connect();
  const reasons: unknown[] = [];
  await c.subscribe('queue.failed', (event) => { reasons.push((event.payload as { reason: string }).reason); });
  const attempts: number[] = [];
  const worker = c.work('flaky.job', (task) => {
    attempts.push(task.attempts);
    if (task.attempts === 1) throw new Error('model overloaded');
    return 'fine';
  });
  await c.enqueue('flaky.job', {}, { attempts: 3, backoff: { type: 'fixed', delay: 50 } });
  await until(() => worker.acked === 1, 5000);
  t.same(attempts, [1, 2], 'delivered again after the failure');
  t.equal(worker.failed, 1);
  t.same(reasons, ['model overloaded'], "the handler's error message is the reason");
});

t.test("the seed's method names keep working: onTaskReceived, pull, ack, fail", async (t) => {
  const gw = await startGateway(t);
  const service = client(t, gw.busUrl, { id: 'tts' });
  const producer = client(t, gw.busUrl, { id: 'cephalon' });
  await service.connect();
  await producer.connect();
  const received: Task[] = [];
  // The seed's serviceTemplate: handle, ack or fail, pull again.
  service.onTaskReceived(async (task) => {
    received.push(task);
    if ((task.payload as { text: string }).text === 'bad') service.fail(task.id, 'cannot say that');
    else service.ack(task.id);
    setTimeout(() => service.pull(task.queue), 10);
  });
  service.pull('generate.audio');
  // Barrier: the gateway answers the ping after it has processed the pull.
  await service.ping();
  t.equal(received.length, 0, 'an empty queue: the pull waits instead of starving');
  await producer.enqueue('generate.audio', { text: 'hello' });
  await producer.enqueue('generate.audio', { text: 'bad' }, { attempts: 1 });
  await until(() => received.length === 2);
  t.same(received.map((task) => task.payload), [{ text: 'hello' }, { text: 'bad' }]);
  t.match(received[0], { queue: 'generate.audio', attempts: 1 });
  const counts = async () => ((await (await fetch(`${gw.httpUrl}/queues/generate.audio`)).json()) as { counts: Record<string, number> }).counts;
  await until(async () => (await counts()).completed === 1 && (await counts()).failed === 1);
  t.pass('one acked, one failed into the dead letters');
  const err = await service.ack('no-such-task').then(() => null, (e: BrokerError) => e);
  t.equal(err?.code, 'UNKNOWN_TASK', 'acking a task not held is refused');
});

t.test('gateway restarted mid-stream: the client reconnects, resubscribes, resumes pulling, no receipted task is lost', async (t) => {
  const gw = await startRestartableGateway(t);
  const reconnect = { initialDelayMs: 50, maxDelayMs: 400 };
  const producer = client(t, gw.busUrl, { id: 'producer', reconnect, maxBufferedFrames: 5000 });
  const worker = client(t, gw.busUrl, { id: 'worker', reconnect });
  await producer.connect();
  await worker.connect();

  const events: number[] = [];
  await worker.subscribe('tick.>', (event) => { events.push(event.payload as number); });
  const processed = new Set<string>();
  let running = 0;
  let mostRunning = 0;
  const handle = worker.work('restart.job', async (task) => {
    running++;
    mostRunning = Math.max(mostRunning, running);
    await sleep(2);
    processed.add(task.id);
    running--;
  }, { concurrency: 5 });

  const receipted: string[] = [];
  const refused: string[] = [];
  let producing = true;
  const production = (async () => {
    for (let n = 0; producing; n++) {
      producer.enqueue('restart.job', { n }).then((id) => receipted.push(id), (err: BrokerError) => refused.push(err.code));
      producer.publish('tick.n', n).catch(() => {});
      await sleep(2);
    }
  })();

  await until(() => processed.size >= 100, 10_000);
  await gw.restart(300);
  const resumedAt = processed.size;
  await until(() => processed.size >= resumedAt + 100, 15_000);
  producing = false;
  await production;
  await until(() => receipted.length + refused.length > 0 && [...receipted].every((id) => processed.has(id)), 20_000);
  t.ok(receipted.length > 200, `${receipted.length} tasks receipted`);
  t.ok(refused.every((code) => code === 'DISCONNECTED'), `only enqueues in flight at the restart were refused (${refused.length})`);
  t.ok([...receipted].every((id) => processed.has(id)), 'every receipted task was processed');
  t.ok(mostRunning <= 5, `never more than 5 in hand (max ${mostRunning})`);
  const before = events.length;
  await producer.publish('tick.after', -1);
  await until(() => events.length > before && events.includes(-1));
  t.pass('the subscription came back with the connection');
  const pullers = await pullersOf(gw.httpUrl, 'restart.job');
  const mine = pullers.filter((p) => p.name === 'worker');
  t.equal(mine.length, 1, 'the worker pulls from the new gateway');
  t.ok((mine[0]?.credits ?? 0) + (mine[0]?.leased ?? 0) <= 5, 'with no more than its 5 credits');
  await handle.stop();
});
