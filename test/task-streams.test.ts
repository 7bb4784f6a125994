import { request } from 'node:http';
import { Redis } from 'ioredis';
import t from 'tap';
import { decodeBinaryFrame, encodeBinaryFrame } from '../src/bus/binary-frame.js';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

// Streamed task output (bus protocol v3) over raw /bus frames and SSE, on a real gateway and Redis.
const redis = await startRedis(t);
const prefix = 'streams';
const gw = await startGateway(t, { redisUrl: redis.url, queuePrefix: prefix, streamMaxBytes: 64 * 1024, streamMaxChunks: 50 });

type Frame = Record<string, unknown>;
type Chunk = { taskId: string; seq: number; attempt?: number; data?: unknown; end?: string; result?: unknown; gap?: boolean };

async function open(name: string, url = gw.busUrl): Promise<TestSocket> {
  const socket = await TestSocket.open(`${url}?name=${name}`);
  t.teardown(() => socket.close());
  return socket;
}

async function enqueueStreamed(socket: TestSocket, queue: string, task: unknown = {}, opts: Frame = {}): Promise<string> {
  const receipt = await socket.call({ action: 'enqueue', queue, task, opts: { stream: true, ...opts } });
  if (typeof receipt.taskId !== 'string') throw new Error(`enqueue refused: ${JSON.stringify(receipt)}`);
  return receipt.taskId;
}

async function pullOne(worker: TestSocket, queue: string): Promise<Frame> {
  worker.send({ action: 'pull', queue });
  const { task } = await worker.next((f) => 'task' in f) as { task: Frame };
  return task;
}

function chunkOf(socket: TestSocket, taskId: string): Promise<Chunk> {
  return socket.next((f) => (f.chunk as Chunk | undefined)?.taskId === taskId).then((f) => f.chunk as Chunk);
}

/** Every chunk frame up to and with the end. */
async function untilEnd(socket: TestSocket, taskId: string): Promise<Chunk[]> {
  const chunks: Chunk[] = [];
  for (;;) {
    const chunk = await chunkOf(socket, taskId);
    chunks.push(chunk);
    if (chunk.end !== undefined) return chunks;
  }
}

t.test('a worker streams chunks in order to a follower; the ack ends the stream with its result under the next seq', async (t) => {
  const requester = await open('requester-order');
  const worker = await open('worker-order');
  const taskId = await enqueueStreamed(requester, 'llm.generate', { prompt: 'hi' });
  t.match(await requester.call({ action: 'follow', taskId }), { ok: true }, 'following a task not yet delivered');
  const task = await pullOne(worker, 'llm.generate');
  t.equal(task.stream, true, 'the task frame says it is streamed');
  const tokens = ['Hel', 'lo', { text: ' world', logprob: -0.5 }, 4, null, [1, 2]];
  for (const [i, data] of tokens.entries()) {
    t.same(await worker.call({ action: 'chunk', taskId, data }, `c${i}`), { ok: true, id: `c${i}`, seq: i + 1 }, `chunk ${i + 1} receipted with its seq`);
  }
  t.same((await worker.call({ action: 'ack', taskId, result: { tokens: 6 } })).ok, true);
  const chunks = await untilEnd(requester, taskId);
  t.same(chunks.map((c) => c.seq), [1, 2, 3, 4, 5, 6, 7], 'seq 1..6, the end 7');
  t.same(chunks.slice(0, 6).map((c) => c.data), tokens, 'data as written');
  t.ok(chunks.slice(0, 6).every((c) => c.attempt === 1), 'each chunk names its attempt');
  t.same(chunks[6], { taskId, seq: 7, end: 'ok', result: { tokens: 6 } });

  const late = await open('late-follower');
  t.match(await late.call({ action: 'follow', taskId, from: 5 }), { ok: true });
  t.same((await untilEnd(late, taskId)).map((c) => c.seq), [5, 6, 7], 'a stream that ended is kept: from 5 gives 5, 6 and the end');
});

t.test('refusals: NOT_LEASED, NOT_STREAMED, TOO_LARGE, UNKNOWN_TASK, bad frames', async (t) => {
  const requester = await open('requester-refusals');
  const worker = await open('worker-refusals');
  const stranger = await open('stranger-refusals');
  const plain = (await requester.call({ action: 'enqueue', queue: 'plain.jobs', task: 1 })).taskId as string;
  const plainTask = await pullOne(worker, 'plain.jobs');
  t.equal(plainTask.stream, undefined, 'a task enqueued without opts.stream is not marked');
  t.match(await worker.call({ action: 'chunk', taskId: plain, data: 'x' }), { code: 'NOT_STREAMED' });
  t.match(await requester.call({ action: 'follow', taskId: plain }), { code: 'UNKNOWN_TASK' }, 'a task without a stream cannot be followed');

  const taskId = await enqueueStreamed(requester, 'capped.jobs');
  t.match(await worker.call({ action: 'chunk', taskId, data: 'too early' }), { code: 'NOT_LEASED' }, 'not delivered yet: nobody holds it');
  await pullOne(worker, 'capped.jobs');
  t.match(await stranger.call({ action: 'chunk', taskId, data: 'x' }), { code: 'NOT_LEASED' }, 'only the holder streams');
  t.match(await worker.call({ action: 'chunk', taskId, data: 'x'.repeat(64 * 1024) }), { code: 'TOO_LARGE' }, 'over STREAM_MAX_BYTES');
  t.match(await worker.call({ action: 'chunk', taskId }), { code: 'INVALID_FRAME' }, 'data is required');
  t.match(await requester.call({ action: 'follow', taskId, from: 0 }), { code: 'INVALID_FRAME' });
  for (let i = 1; i <= 50; i++) t.match(await worker.call({ action: 'chunk', taskId, data: i }), { seq: i });
  t.match(await worker.call({ action: 'chunk', taskId, data: 51 }), { code: 'TOO_LARGE' }, 'past STREAM_MAX_CHUNKS');
  t.match(await requester.call({ action: 'follow', taskId: 'no-such-task' }), { code: 'UNKNOWN_TASK' });
  t.match(await requester.call({ action: 'enqueue', queue: 'other.jobs', task: 1, opts: { stream: true, jobId: taskId } }), { code: 'INVALID_FRAME' },
    'a task id already streaming in another queue');
  t.match(await requester.call({ action: 'enqueue', queue: 'other.jobs', task: 1, opts: { stream: 'yes' } }), { code: 'INVALID_FRAME' });
  t.same((await worker.call({ action: 'ack', taskId })).ok, true);
  t.match(await worker.call({ action: 'chunk', taskId, data: 'after' }), { code: 'NOT_LEASED' }, 'acked: no longer held');
});

t.test('fail that gives up ends the stream "failed"; cancel ends it "cancelled"; a retried task continues the seq with its attempt', async (t) => {
  const requester = await open('requester-ends');
  const worker = await open('worker-ends');
  const retried = await enqueueStreamed(requester, 'ends.jobs', 1, { attempts: 2, backoff: 0 });
  t.match(await requester.call({ action: 'follow', taskId: retried }), { ok: true });
  await pullOne(worker, 'ends.jobs');
  t.match(await worker.call({ action: 'chunk', taskId: retried, data: 'first try' }), { seq: 1 });
  t.same((await worker.call({ action: 'fail', taskId: retried, reason: 'flaky' })).ok, true);
  const again = await pullOne(worker, 'ends.jobs');
  t.equal(again.attempts, 2);
  t.match(await worker.call({ action: 'chunk', taskId: retried, data: 'second try' }), { seq: 2 });
  t.same((await worker.call({ action: 'fail', taskId: retried, reason: 'broken' })).ok, true);
  const chunks = await untilEnd(requester, retried);
  t.same(chunks.map((c) => [c.seq, c.attempt, c.data ?? c.end]), [[1, 1, 'first try'], [2, 2, 'second try'], [3, undefined, 'failed']]);
  t.equal(chunks[2]!.result, undefined, 'no result on a failed end');

  const cancelled = await enqueueStreamed(requester, 'ends.jobs', 2);
  t.match(await requester.call({ action: 'follow', taskId: cancelled }), { ok: true });
  await pullOne(worker, 'ends.jobs');
  t.match(await worker.call({ action: 'chunk', taskId: cancelled, data: 'partial' }), { seq: 1 });
  t.same((await requester.call({ action: 'cancel', queue: 'ends.jobs', taskId: cancelled })).ok, true);
  t.same((await untilEnd(requester, cancelled)).map((c) => c.end ?? c.data), ['partial', 'cancelled']);

  const timedOut = await enqueueStreamed(requester, 'ends.jobs', 3, { timeout: 100, attempts: 1 });
  t.match(await requester.call({ action: 'follow', taskId: timedOut }), { ok: true });
  await pullOne(worker, 'ends.jobs');
  await worker.next((f) => (f.revoke as Frame | undefined)?.taskId === timedOut);
  t.same((await untilEnd(requester, timedOut)).map((c) => c.end), ['cancelled'], 'a timeout on the last attempt ends it "cancelled"');
});

t.test('a waiting streamed task removed over REST ends its stream "cancelled" and tells its requester', async (t) => {
  const requester = await open('requester-removed');
  await requester.call({ action: 'subscribe', topic: 'queue.cancelled' });
  await requester.call({ action: 'subscribe', topic: 'removed.reply' });
  const taskId = await enqueueStreamed(requester, 'removed.jobs', 1, { replyTo: 'removed.reply' });
  t.match(await requester.call({ action: 'follow', taskId }), { ok: true });
  t.equal((await fetch(`${gw.httpUrl}/queues/removed.jobs/tasks/${taskId}`, { method: 'DELETE' })).status, 200);
  t.same((await untilEnd(requester, taskId)).map((c) => c.end), ['cancelled'], 'followers are not left waiting');
  t.match((await requester.event('queue.cancelled')).event, { payload: { queue: 'removed.jobs', taskId, reason: 'removed', stream: true } });
  t.match((await requester.event('removed.reply')).event, { correlationId: taskId, payload: { error: 'cancelled' } }, 'the requester is not left waiting');
});

t.test('a follower that reconnects resumes from its last seq + 1: no gap, no duplicate', async (t) => {
  const requester = await open('requester-resume');
  const worker = await open('worker-resume');
  const taskId = await enqueueStreamed(requester, 'resume.jobs');
  await pullOne(worker, 'resume.jobs');
  const first = await open('follower-resume-1');
  t.match(await first.call({ action: 'follow', taskId }), { ok: true });
  const seen: number[] = [];
  for (let i = 1; i <= 10; i++) t.match(await worker.call({ action: 'chunk', taskId, data: `token ${i}` }), { seq: i });
  for (let i = 1; i <= 4; i++) seen.push((await chunkOf(first, taskId)).seq);
  first.close();
  const writing = (async () => {
    for (let i = 11; i <= 20; i++) await worker.call({ action: 'chunk', taskId, data: `token ${i}` });
    await worker.call({ action: 'ack', taskId, result: 'done' });
  })();
  const second = await open('follower-resume-2');
  t.match(await second.call({ action: 'follow', taskId, from: seen[seen.length - 1]! + 1 }), { ok: true });
  const rest = await untilEnd(second, taskId);
  await writing;
  seen.push(...rest.map((c) => c.seq));
  t.same(seen, Array.from({ length: 21 }, (_, i) => i + 1), 'every seq once, in order, the end last');
  t.same(rest.slice(0, -1).map((c) => c.data), Array.from({ length: 16 }, (_, i) => `token ${i + 5}`));
  t.ok(await second.nothing((f) => 'chunk' in f), 'nothing after the end');
});

t.test('unfollow stops the chunks', async (t) => {
  const requester = await open('requester-unfollow');
  const worker = await open('worker-unfollow');
  const taskId = await enqueueStreamed(requester, 'unfollow.jobs');
  await pullOne(worker, 'unfollow.jobs');
  t.match(await requester.call({ action: 'follow', taskId }), { ok: true });
  t.match(await worker.call({ action: 'chunk', taskId, data: 'one' }), { seq: 1 });
  t.equal((await chunkOf(requester, taskId)).seq, 1);
  t.match(await requester.call({ action: 'unfollow', taskId }), { ok: true });
  t.match(await worker.call({ action: 'chunk', taskId, data: 'two' }), { seq: 2 });
  t.same((await worker.call({ action: 'ack', taskId })).ok, true);
  // Chunk 2 was written after the unfollow's receipt: the next chunk frame here is the end.
  t.match(await requester.call({ action: 'follow', taskId, from: 3 }), { ok: true });
  t.same((await chunkOf(requester, taskId)), { taskId, seq: 3, end: 'ok', result: null }, 'seq 2 never came');
});

t.test('a follow from a seq no longer kept answers a gap naming the first seq kept', async (t) => {
  const requester = await open('requester-gap');
  const worker = await open('worker-gap');
  const taskId = await enqueueStreamed(requester, 'gap.jobs');
  await pullOne(worker, 'gap.jobs');
  for (let i = 1; i <= 4; i++) await worker.call({ action: 'chunk', taskId, data: i });
  // Chunks 1 and 2 lost (as to a Redis without persistence): the gateway must say so, not skip them silently.
  const direct = new Redis(redis.url);
  t.teardown(() => direct.quit());
  t.equal(await direct.xdel(`${prefix}:>stream:${taskId}`, '1-0', '2-0'), 2);
  t.match(await requester.call({ action: 'follow', taskId, from: 1 }), { ok: true });
  t.same(await chunkOf(requester, taskId), { taskId, seq: 3, gap: true });
  t.same((await chunkOf(requester, taskId)).data, 3);
  t.same((await chunkOf(requester, taskId)).data, 4);
});

t.test('binary chunks: written as binary frames, stored raw, followed as binary frames and as base64 over SSE', async (t) => {
  const requester = await open('requester-binary');
  const worker = await open('worker-binary');
  const taskId = await enqueueStreamed(requester, 'audio.tts');
  await pullOne(worker, 'audio.tts');
  t.match(await requester.call({ action: 'follow', taskId }), { ok: true });
  const audio = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) % 256));
  worker.ws.send(encodeBinaryFrame({ action: 'chunk', taskId, id: 'b1' }, audio), { binary: true });
  t.same(await worker.next((f) => f.id === 'b1'), { ok: true, id: 'b1', seq: 1 });
  t.match(await worker.call({ action: 'chunk', taskId, data: { caption: 'hello' } }), { seq: 2 });
  worker.ws.send(encodeBinaryFrame({ action: 'chunk', taskId, id: 'b3' }, new Uint8Array(0)), { binary: true });
  t.same(await worker.next((f) => f.id === 'b3'), { ok: true, id: 'b3', seq: 3 }, 'an empty binary chunk');
  worker.ws.send(encodeBinaryFrame({ action: 'publish', id: 'bad' }, audio), { binary: true });
  t.match(await worker.next((f) => f.id === 'bad'), { code: 'INVALID_FRAME' }, 'binary frames carry chunks only');
  worker.ws.send(encodeBinaryFrame({ action: 'chunk', taskId, id: 'big' }, new Uint8Array(64 * 1024 + 1)), { binary: true });
  t.match(await worker.next((f) => f.id === 'big'), { code: 'TOO_LARGE' });
  t.same((await worker.call({ action: 'ack', taskId, result: { seconds: 1.5 } })).ok, true);

  const first = await requester.next((f) => 'binary' in f);
  const decoded = decodeBinaryFrame(first.binary as Buffer);
  if (typeof decoded === 'string') throw new Error(decoded);
  t.same(decoded.header, { chunk: { taskId, seq: 1, attempt: 1 } });
  t.ok(Buffer.from(decoded.body).equals(audio), 'the bytes as written');
  t.same((await chunkOf(requester, taskId)).data, { caption: 'hello' });
  const empty = decodeBinaryFrame((await requester.next((f) => 'binary' in f)).binary as Buffer);
  t.match(empty, { header: { chunk: { seq: 3 } } });
  t.equal((empty as { body: Uint8Array }).body.length, 0);
  t.same(await chunkOf(requester, taskId), { taskId, seq: 4, end: 'ok', result: { seconds: 1.5 } });

  const events = await sse(`/queues/audio.tts/tasks/${taskId}/stream`);
  t.equal(events.status, 200);
  t.match(events.type, /^text\/event-stream/);
  t.same(events.events.map((e) => [e.id, e.event]), [['1', 'binary'], ['2', 'chunk'], ['3', 'binary'], ['4', 'end']]);
  t.ok(Buffer.from(events.events[0]!.data, 'base64').equals(audio));
  t.same(JSON.parse(events.events[3]!.data), { end: 'ok', result: { seconds: 1.5 } });
});

interface SseEvent { id?: string; event?: string; data: string }

/** GET an event stream to its end; `headers` e.g. Last-Event-ID. */
function sse(path: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string; events: SseEvent[]; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${gw.httpUrl}${path}`, { headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (text: string) => { body += text; });
      res.on('end', () => {
        const events = body.split('\n\n').filter((block) => block.trim() !== '').map((block) => {
          const event: SseEvent = { data: '' };
          for (const line of block.split('\n')) {
            const at = line.indexOf(': ');
            const [field, value] = [line.slice(0, at), line.slice(at + 2)];
            if (field === 'id') event.id = value;
            else if (field === 'event') event.event = value;
            else if (field === 'data') event.data = value;
          }
          return event;
        });
        resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), events, body });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('SSE: live chunks, Last-Event-ID resumes after it, refusals as JSON errors', async (t) => {
  const requester = await open('requester-sse');
  const worker = await open('worker-sse');
  const taskId = await enqueueStreamed(requester, 'sse.jobs');
  await pullOne(worker, 'sse.jobs');
  for (let i = 1; i <= 3; i++) await worker.call({ action: 'chunk', taskId, data: `t${i}` });
  const live = sse(`/queues/sse.jobs/tasks/${taskId}/stream`);
  // The route follows before it answers: chunks after this are live ones.
  await until(() => gw.app.taskStreams.followerCount(taskId) === 1, 5000, 'the SSE follower');
  for (let i = 4; i <= 5; i++) await worker.call({ action: 'chunk', taskId, data: `t${i}` });
  await worker.call({ action: 'ack', taskId, result: 'fin' });
  const all = await live;
  t.same(all.events.map((e) => [e.id, e.event, e.data]), [
    ['1', 'chunk', '"t1"'], ['2', 'chunk', '"t2"'], ['3', 'chunk', '"t3"'], ['4', 'chunk', '"t4"'], ['5', 'chunk', '"t5"'],
    ['6', 'end', '{"end":"ok","result":"fin"}'],
  ]);
  const resumed = await sse(`/queues/sse.jobs/tasks/${taskId}/stream`, { 'Last-Event-ID': '3' });
  t.same(resumed.events.map((e) => e.id), ['4', '5', '6'], 'after Last-Event-ID 3');
  const from = await sse(`/queues/sse.jobs/tasks/${taskId}/stream?from=5`);
  t.same(from.events.map((e) => e.id), ['5', '6']);

  const wrongQueue = await fetch(`${gw.httpUrl}/queues/other.jobs/tasks/${taskId}/stream`);
  t.equal(wrongQueue.status, 404);
  t.match(await wrongQueue.json(), { code: 'UNKNOWN_TASK' });
  const none = await fetch(`${gw.httpUrl}/queues/sse.jobs/tasks/nothing-here/stream`);
  t.equal(none.status, 404);
  const bad = await fetch(`${gw.httpUrl}/queues/sse.jobs/tasks/${taskId}/stream?from=0`);
  t.equal(bad.status, 400);
});
