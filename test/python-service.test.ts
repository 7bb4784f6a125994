import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildApp } from '../app.js';
import { startGateway, type RunningGateway } from './helpers/gateway.js';
import { freePort } from './helpers/ports.js';
import { TestSocket, until } from './helpers/test-socket.js';
import { PythonProcess } from './python/python-process.js';

type Frame = Record<string, unknown>;
interface Teardown {
  teardown(fn: () => unknown): void;
}

/** An HTTP server that records heartbeat POSTs and answers as the gateway does. */
async function heartbeatSink(t: Teardown): Promise<{ url: string; beats: Frame[] }> {
  const beats: Frame[] = [];
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    let body = '';
    request.on('data', (chunk: Buffer) => { body += chunk.toString(); });
    request.on('end', () => {
      const beat = JSON.parse(body) as Frame;
      beats.push({ ...beat, path: request.url, method: request.method });
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ status: 'ok', ...beat }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise((r) => server.close(r)));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/heartbeat`, beats };
}

async function queueView(gw: { httpUrl: string }, queue: string): Promise<{ counts: Record<string, number>; pullers: { credits: number }[] }> {
  const response = await fetch(`${gw.httpUrl}/queues/${queue}`);
  return (await response.json()) as { counts: Record<string, number>; pullers: { credits: number }[] };
}

async function taskOf(gw: RunningGateway, queue: string, id: string): Promise<Frame> {
  const response = await fetch(`${gw.httpUrl}/queues/${queue}/tasks/${id}`);
  return (await response.json()) as Frame;
}

async function enqueue(socket: TestSocket, queue: string, tasks: unknown[], opts?: Frame): Promise<string[]> {
  const receipts = await Promise.all(tasks.map((task) => socket.call(opts ? { action: 'enqueue', queue, task, opts } : { action: 'enqueue', queue, task })));
  return receipts.map((r) => r.taskId as string);
}

function startStt(t: Teardown, busUrl: string, queue: string, heartbeatUrl: string, sync = false): PythonProcess {
  return PythonProcess.start(t, 'service.py', [busUrl, queue, heartbeatUrl, ...(sync ? ['sync'] : [])]);
}

t.test('start_service: heartbeats, answers requests, and on SIGTERM finishes the tasks in hand, then exits 0', async (t) => {
  const gw = await startGateway(t);
  const sink = await heartbeatSink(t);
  const stt = startStt(t, gw.busUrl, 'transcribe.audio', sink.url);
  await until(async () => (await queueView(gw, 'transcribe.audio')).pullers[0]?.credits === 2);
  await until(() => sink.beats.length >= 2);
  t.same(sink.beats[0], { pid: stt.child.pid, name: 'stt', path: '/heartbeat', method: 'POST' }, 'beats {pid, name} as the HeartbeatClient does');

  const asker = await TestSocket.open(gw.busUrl);
  t.teardown(() => asker.close());
  await asker.call({ action: 'subscribe', topic: 'ts.inbox' });
  asker.send({ action: 'publish', message: { type: 'voice.ping', payload: 7, replyTo: 'ts.inbox', correlationId: 'r1' } });
  const reply = (await asker.event('ts.inbox')).event as Frame;
  t.same(reply.payload, { pong: 7 }, "an event handler's return value answers a request");
  t.equal(reply.correlationId, 'r1');

  const [a, b, c] = await enqueue(asker, 'transcribe.audio', [{ seconds: 0.6 }, { seconds: 0.6 }, { seconds: 0.6 }]);
  await stt.next((l) => l.started === a);
  await stt.next((l) => l.started === b);
  stt.signal('SIGTERM');
  const exit = await stt.exited;
  t.same(exit, { code: 0, signal: null }, 'exits 0 after SIGTERM');
  t.same(stt.all.filter((l) => 'done' in l).map((l) => l.done).sort(), [a, b].sort(), 'the two tasks in hand were finished');
  t.same(stt.all.filter((l) => 'exited' in l), [{ exited: true, inHand: 0, connected: false, beating: false }], 'start_service returned after stopping its heartbeat');
  t.notOk(stt.all.some((l) => l.started === c), 'no new task was taken after the signal');
  t.equal((await taskOf(gw, 'transcribe.audio', a as string)).state, 'completed');
  t.same((await taskOf(gw, 'transcribe.audio', b as string)).result, { text: `transcript of ${b}` }, 'the return value is the result');
  t.equal((await taskOf(gw, 'transcribe.audio', c as string)).state, 'waiting', 'the third task waits for the next worker');
});

t.test('plain-function handlers: run in threads side by side; an exception fails the task with its message', async (t) => {
  const gw = await startGateway(t);
  const sink = await heartbeatSink(t);
  const producer = await TestSocket.open(gw.busUrl);
  t.teardown(() => producer.close());
  const [slowA, slowB] = await enqueue(producer, 'tts.q', [{ seconds: 1 }, { seconds: 1 }]);
  const [bad] = await enqueue(producer, 'tts.q', [{ fail: true }], { attempts: 1 });
  const stt = startStt(t, gw.busUrl, 'tts.q', sink.url, true);
  await stt.next((l) => l.started === slowA);
  await stt.next((l) => l.started === slowB);
  const beatsThen = sink.beats.length;
  await until(() => sink.beats.length > beatsThen);
  t.notOk(stt.all.some((l) => 'done' in l), 'both blocking handlers were running at once, and the heartbeat went on');
  await until(async () => (await taskOf(gw, 'tts.q', bad as string)).state === 'failed');
  t.equal((await taskOf(gw, 'tts.q', bad as string)).failedReason, `bad audio: ${bad}`);
  await until(async () => (await queueView(gw, 'tts.q')).counts.completed === 2);
  stt.signal('SIGINT');
  t.equal((await stt.exited).code, 0, 'SIGINT stops it gracefully too');
});

t.test('a second signal exits at once; the task in hand goes back to its queue', async (t) => {
  const gw = await startGateway(t);
  const sink = await heartbeatSink(t);
  const producer = await TestSocket.open(gw.busUrl);
  t.teardown(() => producer.close());
  const [long] = await enqueue(producer, 'long.q', [{ seconds: 30 }]);
  const stt = startStt(t, gw.busUrl, 'long.q', sink.url);
  await stt.next((l) => l.started === long);
  stt.signal('SIGTERM');
  // Readiness: the service says it took the signal and is finishing its task.
  await until(() => stt.stderr.includes('stopping: finishing 1 task(s) in hand'), 5000, 'the first signal taken');
  t.equal(stt.child.exitCode, null, 'still finishing its task after one signal');
  const before = Date.now();
  stt.signal('SIGTERM');
  const exit = await stt.exited;
  t.equal(exit.code, 128 + 15);
  t.ok(Date.now() - before < 2000, 'exited at once');
  await until(async () => (await taskOf(gw, 'long.q', long as string)).state === 'waiting');
  t.pass('the unfinished task is back in its queue');
});

t.test('a service started before the gateway connects when it comes up', async (t) => {
  const port = await freePort();
  const sink = await heartbeatSink(t);
  const busUrl = `ws://127.0.0.1:${port}/bus`;
  const stt = startStt(t, busUrl, 'early.q', sink.url);
  // Readiness: it says it cannot connect and keeps trying.
  await until(() => stt.stderr.includes('retrying'), 10_000, 'the service reporting that it waits for the gateway');
  t.equal(stt.child.exitCode, null, 'it waits instead of exiting');
  const dataDir = mkdtempSync(join(tmpdir(), 'brainstem-gw-'));
  const app = await buildApp({ logger: false, dataDir });
  t.teardown(async () => {
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  await app.listen({ port, host: '127.0.0.1' });
  const gw = { httpUrl: `http://127.0.0.1:${port}` };
  await until(async () => (await queueView(gw, 'early.q')).pullers[0]?.credits === 2, 10_000);
  const producer = await TestSocket.open(busUrl);
  t.teardown(() => producer.close());
  const [id] = await enqueue(producer, 'early.q', [{}]);
  t.equal((await stt.next((l) => 'done' in l)).done, id);
});

t.test("by default the heartbeats go to the gateway's own /heartbeat", async (t) => {
  const gw = await startGateway(t);
  const watcher = await TestSocket.open(gw.busUrl);
  t.teardown(() => watcher.close());
  await watcher.call({ action: 'subscribe', topic: 'heartbeat.ping' });
  const stt = startStt(t, gw.busUrl, 'beats.q', 'default');
  const ping = (await watcher.next((f) => 'event' in f && ((f.event as Frame).payload as Frame).pid === stt.child.pid, 10_000)).event as Frame;
  t.equal((ping.payload as Frame).name, 'stt', 'the gateway accepted the beat and told the bus');
  const records = await (await fetch(`${gw.httpUrl}/heartbeats`)).json() as Frame[];
  const record = records.find((r) => r.pid === stt.child.pid);
  t.equal(record?.name, 'stt');
  t.equal(record?.status, 'alive');
  stt.signal('SIGTERM');
  t.equal((await stt.exited).code, 0);
});
