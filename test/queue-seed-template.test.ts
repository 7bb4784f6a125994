import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;
interface Task { id: string; queue: string; payload: Record<string, unknown>; attempts: number }

/** Runs the user's serviceTemplate.js (verbatim fixture) as a separate process. */
const runner = fileURLToPath(new URL('./fixtures/seed-runner/run-service.mjs', import.meta.url));

interface SeedService {
  child: ChildProcess;
  handled: Task[];
  output: string[];
}

function startSeedService(t: { teardown(fn: () => unknown): void }, busUrl: string, id: string, queue: string): SeedService {
  const child = spawn(process.execPath, [runner], {
    env: { ...process.env, BROKER_URL: busUrl, SERVICE_ID: id, QUEUE: queue },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const service: SeedService = { child, handled: [], output: [] };
  const collect = (line: string) => {
    service.output.push(line);
    if (line.startsWith('{"handled"')) service.handled.push((JSON.parse(line) as { handled: Task }).handled);
  };
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', collect);
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', collect);
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return service;
}

const redis = await startRedis(t);

t.test("the user's startService pulls through the gateway, started while its queue is empty", async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url, queueBackoffMs: 100 });
  const queue = 'generate.audio';
  const observer = await TestSocket.open(`${gw.busUrl}?name=observer`);
  t.teardown(() => observer.close());
  await observer.call({ action: 'subscribe', topic: 'queue.>' });

  const tts = startSeedService(t, gw.busUrl, 'tts', queue);
  // Its first pull finds nothing: the gateway keeps it open (the old broker dropped it).
  await until(async () => {
    const detail = await (await fetch(`${gw.httpUrl}/queues/${queue}`)).json() as { pullers: Frame[] };
    return detail.pullers.some((p) => p.credits === 1);
  }, 20_000);
  t.ok(tts.output.includes('[tts] connected to broker'), 'the template connected with its own code');
  t.same(tts.handled, [], 'nothing handled yet');

  const ids: string[] = [];
  for (const text of ['one', 'two', 'three']) {
    ids.push((await observer.call({ action: 'enqueue', queue, task: { text } })).taskId as string);
  }
  const failing = (await observer.call({ action: 'enqueue', queue, task: { text: 'four', failFirst: true } })).taskId as string;

  const completed = new Set<string>();
  const failed: Frame[] = [];
  while (completed.size < 4) {
    const { event } = await observer.event(undefined, 15_000) as { event: Frame };
    const payload = event.payload as Frame;
    if (event.type === 'queue.completed') completed.add(payload.taskId as string);
    if (event.type === 'queue.failed') failed.push(payload);
  }
  t.same(completed, new Set([...ids, failing]), 'every task was acked by the template');
  t.same(failed, [{ queue, taskId: failing, attempts: 1, reason: 'first try fails' }], "the template's fail(task.id, err.message) arrives");
  t.same(tts.handled.map((task) => task.payload.text), ['one', 'two', 'three', 'four', 'four'], 'in order; the failed one again');
  t.same(tts.handled.map((task) => task.attempts), [1, 1, 1, 1, 2]);
  t.match(tts.handled[0], { id: ids[0], queue, payload: { text: 'one' } });
  t.notOk(tts.output.some((line) => /error|invalid/i.test(line) && !line.includes('first try fails')), 'no protocol errors in its output');
});

t.test('two template services share a queue: one dies mid-task, the other gets that task with attempts 2', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url });
  const queue = 'transcribe.audio';
  const producer = await TestSocket.open(`${gw.busUrl}?name=producer`);
  t.teardown(() => producer.close());
  const pullers = async () => ((await (await fetch(`${gw.httpUrl}/queues/${queue}`)).json()) as { pullers: Frame[] }).pullers;

  const first = startSeedService(t, gw.busUrl, 'stt-1', queue);
  await until(async () => (await pullers()).length === 1, 20_000);
  const { taskId } = await producer.call({ action: 'enqueue', queue, task: { clip: 'a.wav', hangFirst: true } });
  await until(() => first.handled.length === 1, 15_000);
  const second = startSeedService(t, gw.busUrl, 'stt-2', queue);
  await until(async () => (await pullers()).length === 2, 20_000);
  t.same(second.handled, [], 'the second service waits: the only task is leased to the first');

  first.child.kill('SIGKILL');
  await until(() => second.handled.length === 1, 15_000);
  t.match(second.handled[0], { id: taskId, attempts: 2, payload: { clip: 'a.wav' } }, 'the dead worker\'s task, at once');
  await until(async () => ((await (await fetch(`${gw.httpUrl}/queues/${queue}`)).json()) as { counts: Frame }).counts.completed === 1, 10_000);
  t.pass('and the second service acked it');
});
