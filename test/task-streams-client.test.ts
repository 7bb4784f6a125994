import type { Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import t from 'tap';
import { decodeBinaryFrame } from '../src/bus/binary-frame.js';
import { BrokerClient, type StreamChunk, type Task } from '../src/client/index.js';
import { startGateway } from './helpers/gateway.js';
import { startRestartableGateway } from './helpers/restartable-gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

// The TypeScript client's streams (bus protocol v3): enqueue {stream: true}, task.write, client.follow.
const redis = await startRedis(t);

function client(url: string, id: string): BrokerClient {
  const c = new BrokerClient({ url, id, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
  c.on('error', () => {});
  t.teardown(() => c.close());
  return c;
}

async function collect(stream: AsyncIterable<StreamChunk>): Promise<StreamChunk[]> {
  const items: StreamChunk[] = [];
  for await (const item of stream) items.push(item);
  return items;
}

t.test('a worker writes text and binary chunks; a follower reads them in order and the end with the result', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url, queuePrefix: 'client-streams' });
  const worker = client(gw.busUrl, 'tts-worker');
  const requester = client(gw.busUrl, 'tts-requester');
  await Promise.all([worker.connect(), requester.connect()]);
  const seqs: number[] = [];
  worker.work('tts.speak', async (task: Task) => {
    t.equal(task.stream, true);
    seqs.push(await task.write!({ text: 'Hello' }));
    seqs.push(await task.write!(new Uint8Array([1, 2, 3, 255])));
    seqs.push(await task.write!(Buffer.from('raw bytes')));
    seqs.push(await task.write!('done speaking'));
    return { seconds: 2 };
  });
  const { taskId } = await requester.enqueue('tts.speak', { text: 'Hello' }, { stream: true });
  const items = await collect(requester.follow(taskId));
  t.same(seqs, [1, 2, 3, 4], 'write resolves with the seq of each chunk');
  t.same(items.map((i) => i.seq), [1, 2, 3, 4, 5]);
  t.same(items[0]!.data, { text: 'Hello' });
  t.same([...(items[1]!.data as Uint8Array)], [1, 2, 3, 255], 'binary chunks arrive as bytes');
  t.equal(Buffer.from(items[2]!.data as Uint8Array).toString(), 'raw bytes');
  t.equal(items[3]!.data, 'done speaking');
  const { traceparent } = items[0]!;
  t.same(items[4], { taskId, seq: 5, end: 'ok', result: { seconds: 2 }, traceparent });
  t.ok(traceparent !== undefined && items.every((item) => item.traceparent === traceparent), "every item carries the trace the client gave its enqueue (traceTasks)");
  t.same((await collect(requester.follow(taskId, { from: 4 }))).map((i) => i.seq), [4, 5], 'from a later seq');

  await t.rejects(collect(requester.follow('not-streamed')), { code: 'UNKNOWN_TASK' });
});

t.test('a follower resumes after the gateway restarts: every chunk once, the next attempt continuing the seq', async (t) => {
  const gw = await startRestartableGateway(t, { queuePrefix: 'client-streams-restart' });
  const worker = client(gw.busUrl, 'llm-worker');
  const requester = client(gw.busUrl, 'llm-requester');
  await Promise.all([worker.connect(), requester.connect()]);
  let firstAttemptWrote!: () => void;
  const wrote = new Promise<void>((resolve) => { firstAttemptWrote = resolve; });
  let releaseFirst!: () => void;
  const firstHeld = new Promise<void>((resolve) => { releaseFirst = resolve; });
  t.teardown(() => releaseFirst());
  // Concurrency 2: the first attempt's handler stays in hand (its lease went with the restart) while the second runs.
  worker.work('llm.generate', async (task: Task) => {
    if (task.attempts === 1) {
      for (let i = 1; i <= 3; i++) await task.write!(`first ${i}`);
      firstAttemptWrote();
      await firstHeld;
      return null;
    }
    for (let i = 1; i <= 2; i++) await task.write!(`second ${i}`);
    return 'fin';
  }, { concurrency: 2 });
  const { taskId } = await requester.enqueue('llm.generate', { prompt: 'x' }, { stream: true });
  const items: StreamChunk[] = [];
  const reading = (async () => {
    for await (const item of requester.follow(taskId)) {
      items.push(item);
      if (item.seq === 3) {
        await wrote;
        await gw.restart();
      }
    }
  })();
  await reading;
  t.same(items.map((i) => [i.seq, i.attempt, i.data ?? i.end]), [
    [1, 1, 'first 1'], [2, 1, 'first 2'], [3, 1, 'first 3'], [4, 2, 'second 1'], [5, 2, 'second 2'], [6, undefined, 'ok'],
  ]);
  t.equal(items[5]!.result, 'fin');
});

t.test('a worker awaiting its writes is slowed by a paused follower, not failed: held receipts outlast the receipt timeout', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url, queuePrefix: 'client-streams-held', streamWindow: 4, busMaxBacklogBytes: 64 * 1024 });
  const receiptTimeoutMs = 200;
  const worker = new BrokerClient({ url: gw.busUrl, id: 'audio-worker', receiptTimeoutMs });
  worker.on('error', () => {});
  t.teardown(() => worker.close());
  const requester = client(gw.busUrl, 'audio-requester');
  await Promise.all([worker.connect(), requester.connect()]);
  // More than the kernel's socket buffers hold: the gateway's own buffer, then the window, fill.
  const total = 60;
  const chunk = new Uint8Array(512 * 1024).fill(7);
  const written: number[] = [];
  let finished!: (outcome: unknown) => void;
  const outcome = new Promise((resolve) => { finished = resolve; });
  worker.work('audio.render', async (task: Task) => {
    try {
      for (let i = 0; i < total; i++) written.push(await task.write!(chunk));
      finished('written');
    } catch (err) {
      finished(err);
      throw err;
    }
    return 'rendered';
  });
  const { taskId } = await requester.enqueue('audio.render', 1, { stream: true });
  const follower = await TestSocket.open(`${gw.busUrl}?name=paused-follower`);
  t.teardown(() => follower.close());
  t.match(await follower.call({ action: 'follow', taskId }), { ok: true });
  const socket = (follower.ws as unknown as { _socket: Socket })._socket;
  socket.pause();
  await until(() => gw.app.taskStreams.heldReceipts > 0, 30_000, 'a held receipt');
  await delay(receiptTimeoutMs * 3);
  t.ok(gw.app.taskStreams.heldReceipts > 0, 'a receipt is still held, three receipt timeouts on');
  t.ok(written.length < total, 'the worker is slowed');

  socket.resume();
  t.equal(await outcome, 'written', 'no write failed');
  t.same(written, Array.from({ length: total }, (_, i) => i + 1));
});

t.test('a fast follower is not slowed by a paused one: it has every chunk stored, the one whose receipt is held included', async (t) => {
  const window = 4;
  const gw = await startGateway(t, { redisUrl: redis.url, queuePrefix: 'client-streams-fast', streamWindow: window, busMaxBacklogBytes: 64 * 1024 });
  const worker = client(gw.busUrl, 'fast-worker');
  const requester = client(gw.busUrl, 'fast-requester');
  await Promise.all([worker.connect(), requester.connect()]);
  const total = 60;
  const chunk = new Uint8Array(512 * 1024).fill(3);
  const written: number[] = [];
  worker.work('audio.fast', async (task: Task) => {
    for (let i = 0; i < total; i++) written.push(await task.write!(chunk));
    return 'rendered';
  });
  const { taskId } = await requester.enqueue('audio.fast', 1, { stream: true });
  const slow = await TestSocket.open(`${gw.busUrl}?name=slow-follower`);
  t.teardown(() => slow.close());
  t.match(await slow.call({ action: 'follow', taskId }), { ok: true });
  const socket = (slow.ws as unknown as { _socket: Socket })._socket;
  socket.pause();

  const fastSeqs: number[] = [];
  const fast = (async () => {
    for await (const item of requester.follow(taskId)) fastSeqs.push(item.seq);
  })();
  await until(() => gw.app.taskStreams.heldReceipts > 0, 30_000, 'a held receipt');
  const heldSeq = written.length + 1;
  t.ok(heldSeq > window, 'the worker wrote past the window before it was held');
  await until(() => fastSeqs.at(-1) === heldSeq, 10_000, 'the fast follower at the held chunk');
  t.ok(gw.app.taskStreams.heldReceipts > 0 && written.length < total, 'while the worker is still held by the paused follower');
  socket.resume();
  await fast;
  t.same(fastSeqs, Array.from({ length: total + 1 }, (_, i) => i + 1), 'the fast follower: every chunk and the end, in order');
  t.same(written, Array.from({ length: total }, (_, i) => i + 1), 'no write failed');
  const slowSeqs: number[] = [];
  for (;;) {
    const frame = await slow.next((f) => 'binary' in f || 'chunk' in f, 30_000);
    if ('chunk' in frame) {
      slowSeqs.push((frame.chunk as { seq: number }).seq);
      break;
    }
    const decoded = decodeBinaryFrame(frame.binary as Buffer);
    if (typeof decoded !== 'string') slowSeqs.push((decoded.header.chunk as { seq: number }).seq);
  }
  t.same(slowSeqs, Array.from({ length: total + 1 }, (_, i) => i + 1), 'the paused follower, resumed: every chunk and the end, in order');
});
