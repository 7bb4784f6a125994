import type { Socket } from 'node:net';
import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { spawnGatewayProcess } from './helpers/process.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

// Streams across gateways sharing Redis, through a gateway kill -9, and under a slow follower.
const redis = await startRedis(t);
const prefix = 'streams-cluster';

type Frame = Record<string, unknown>;
type Chunk = { taskId: string; seq: number; attempt?: number; data?: unknown; end?: string; result?: unknown };

async function open(url: string, name: string): Promise<TestSocket> {
  const socket = await TestSocket.open(`${url}?name=${name}`);
  t.teardown(() => socket.close());
  return socket;
}

async function pullOne(worker: TestSocket, queue: string): Promise<Frame> {
  worker.send({ action: 'pull', queue });
  const { task } = await worker.next((f) => 'task' in f, 15_000) as { task: Frame };
  return task;
}

async function untilEnd(socket: TestSocket, taskId: string, timeoutMs = 5000): Promise<Chunk[]> {
  const chunks: Chunk[] = [];
  for (;;) {
    const { chunk } = await socket.next((f) => (f.chunk as Chunk | undefined)?.taskId === taskId, timeoutMs) as { chunk: Chunk };
    chunks.push(chunk);
    if (chunk.end !== undefined) return chunks;
  }
}

const HELD_TOTAL = 60;
const IN_ORDER = Array.from({ length: HELD_TOTAL }, (_, i) => i + 1);

/**
 * The follower stops reading its socket (kernel buffers fill, then the
 * gateway's) while the worker sends HELD_TOTAL chunks of 512 KiB without
 * awaiting them; resolves once `writerGateway` holds a receipt, with the
 * follower's resume.
 */
async function writeBehindPausedFollower(writerGateway: { app: { taskStreams: { heldReceipts: number } } }, worker: TestSocket, slow: TestSocket, taskId: string): Promise<() => void> {
  t.match(await slow.call({ action: 'follow', taskId }), { ok: true });
  const socket = (slow.ws as unknown as { _socket: Socket })._socket;
  socket.pause();
  const chunk = 'x'.repeat(512 * 1024);
  for (let i = 1; i <= HELD_TOTAL; i++) worker.send({ action: 'chunk', taskId, data: chunk, id: `c${i}` });
  await until(() => writerGateway.app.taskStreams.heldReceipts > 0, 30_000, "a held receipt on the writer's gateway");
  return () => socket.resume();
}

/** The seqs of the follower's chunks, then of the worker's receipts, HELD_TOTAL each. */
async function seqsAfterResume(worker: TestSocket, slow: TestSocket): Promise<{ seqs: number[]; receipts: number[] }> {
  const seqs: number[] = [];
  for (let i = 1; i <= HELD_TOTAL; i++) seqs.push(((await slow.next((f) => 'chunk' in f, 30_000)).chunk as Chunk).seq);
  const receipts: number[] = [];
  for (let i = 1; i <= HELD_TOTAL; i++) receipts.push((await worker.next((f) => f.id === `c${i}`, 30_000)).seq as number);
  return { seqs, receipts };
}

t.test('a follower on another gateway gets the chunks live, in order, and the end', async (t) => {
  const a = await startGateway(t, { redisUrl: redis.url, queuePrefix: prefix });
  const b = await startGateway(t, { redisUrl: redis.url, queuePrefix: prefix });
  const requester = await open(b.busUrl, 'requester-b');
  const worker = await open(a.busUrl, 'worker-a');
  const { taskId } = await requester.call({ action: 'enqueue', queue: 'cluster.llm', task: 'go', opts: { stream: true } }) as { taskId: string };
  t.match(await requester.call({ action: 'follow', taskId }), { ok: true });
  await pullOne(worker, 'cluster.llm');
  t.match(await worker.call({ action: 'chunk', taskId, data: 'one' }), { seq: 1 });
  t.same((await requester.next((f) => 'chunk' in f)).chunk, { taskId, seq: 1, attempt: 1, data: 'one' }, 'written through A, followed through B');
  for (let i = 2; i <= 30; i++) worker.send({ action: 'chunk', taskId, data: i, id: `c${i}` });
  await worker.next((f) => f.id === 'c30');
  t.same((await worker.call({ action: 'ack', taskId, result: 'fin' })).ok, true);
  const rest = await untilEnd(requester, taskId);
  t.same(rest.map((c) => c.seq), Array.from({ length: 30 }, (_, i) => i + 2), 'seq 2..30 and the end 31, each once');
  t.same(rest[rest.length - 1], { taskId, seq: 31, end: 'ok', result: 'fin' });
});

t.test('receipted chunks survive a kill -9 of the gateway that stored them', async (t) => {
  const first = await spawnGatewayProcess(t, redis.url, { QUEUE_PREFIX: prefix, QUEUE_LEASE_MS: '1000' });
  const requester = await open(first.busUrl, 'requester-kill');
  const worker = await open(first.busUrl, 'worker-kill');
  const { taskId } = await requester.call({ action: 'enqueue', queue: 'kill.llm', task: 1, opts: { stream: true, attempts: 2, backoff: 0 } }) as { taskId: string };
  await pullOne(worker, 'kill.llm');
  for (let i = 1; i <= 5; i++) t.match(await worker.call({ action: 'chunk', taskId, data: `before ${i}` }), { seq: i });
  first.child.kill('SIGKILL');
  await worker.closed;

  const second = await startGateway(t, { redisUrl: redis.url, queuePrefix: prefix, queueLeaseMs: 1000, queueStalledCheckMs: 200 });
  const follower = await open(second.busUrl, 'follower-kill');
  t.match(await follower.call({ action: 'follow', taskId }), { ok: true });
  for (let i = 1; i <= 5; i++) t.same((await follower.next((f) => 'chunk' in f)).chunk, { taskId, seq: i, attempt: 1, data: `before ${i}` });
  // The lease the dead gateway held expires; the next attempt continues the stream.
  const again = await open(second.busUrl, 'worker-again');
  t.equal((await pullOne(again, 'kill.llm')).attempts, 2);
  t.match(await again.call({ action: 'chunk', taskId, data: 'after' }), { seq: 6 });
  t.same((await again.call({ action: 'ack', taskId })).ok, true);
  t.same((await untilEnd(follower, taskId)).map((c) => [c.seq, c.attempt, c.data ?? c.end]), [[6, 2, 'after'], [7, undefined, 'ok']]);
});

t.test('backpressure: receipts wait while a follower is a window behind, and come as it reads; it is never cut', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url, queuePrefix: prefix, streamWindow: 4, busMaxBacklogBytes: 64 * 1024 });
  const requester = await open(gw.busUrl, 'requester-slow');
  const worker = await open(gw.busUrl, 'worker-slow');
  const slow = await open(gw.busUrl, 'follower-slow');
  const { taskId } = await requester.call({ action: 'enqueue', queue: 'slow.audio', task: 1, opts: { stream: true } }) as { taskId: string };
  await pullOne(worker, 'slow.audio');
  const resume = await writeBehindPausedFollower(gw, worker, slow, taskId);
  t.pass('receipts are held while the follower does not read');

  resume();
  const { seqs, receipts } = await seqsAfterResume(worker, slow);
  t.same(seqs, IN_ORDER, 'the slow follower got every chunk, in order');
  t.same(receipts, seqs, 'every receipt came, once the follower read');
  t.equal(gw.app.taskStreams.heldReceipts, 0);
  t.same((await worker.call({ action: 'ack', taskId })).ok, true);
  t.match((await untilEnd(slow, taskId)).pop(), { seq: HELD_TOTAL + 1, end: 'ok' });
  t.ok(await slow.nothing(), 'still connected: not cut as a slow consumer');
});

/** A writer on gateway A holding a streamed task of `queue`, its follower paused on gateway B, and A holding receipts for it. */
async function writerHeldAcrossGateways(t: { teardown(fn: () => unknown): void }, queue: string) {
  const options = { redisUrl: redis.url, queuePrefix: prefix, streamWindow: 4, busMaxBacklogBytes: 64 * 1024 };
  const a = await startGateway(t, options);
  const b = await startGateway(t, options);
  const worker = await open(a.busUrl, `worker-a-${queue}`);
  const slow = await open(b.busUrl, `follower-b-${queue}`);
  const { taskId } = await worker.call({ action: 'enqueue', queue, task: 1, opts: { stream: true } }) as { taskId: string };
  await pullOne(worker, queue);
  const resume = await writeBehindPausedFollower(a, worker, slow, taskId);
  return { a, worker, slow, taskId, resume };
}

t.test('backpressure across gateways: a paused follower on gateway B holds the receipts of a writer on gateway A; they come as it reads', async (t) => {
  const { a, worker, slow, taskId, resume } = await writerHeldAcrossGateways(t, 'cluster.held');
  t.equal(a.app.taskStreams.followerCount(taskId), 0, 'with no follower of its own');
  t.ok(!worker.received.some((f) => f.id === `c${HELD_TOTAL}`), 'the last chunk is not receipted while the follower does not read');

  resume();
  const { seqs, receipts } = await seqsAfterResume(worker, slow);
  t.same(seqs, IN_ORDER, 'the follower on B got every chunk, in order');
  t.same(receipts, seqs, 'every receipt came on A, once the follower on B read');
  t.same((await worker.call({ action: 'ack', taskId })).ok, true);
  t.match((await untilEnd(slow, taskId)).pop(), { seq: HELD_TOTAL + 1, end: 'ok' });
  t.equal(a.app.taskStreams.heldReceipts, 0);
});

t.test("a stream's end lets go of the receipts a paused follower on another gateway held: they are stored, and nothing more is written", async (t) => {
  const { a, worker, taskId, resume } = await writerHeldAcrossGateways(t, 'cluster.ends');
  t.teardown(resume);
  // Every chunk was stored before the ack was read (only their receipts wait): the end comes after them.
  t.same((await worker.call({ action: 'ack', taskId }, 'ack')).ok, true);
  const receipts: number[] = [];
  for (let i = 1; i <= HELD_TOTAL; i++) receipts.push((await worker.next((f) => f.id === `c${i}`, 30_000)).seq as number);
  t.same(receipts, IN_ORDER, 'every held receipt came with the end, the follower still paused');
  t.equal(a.app.taskStreams.heldReceipts, 0);
});
