import t from 'tap';
import { BrokerClient, type StreamChunk, type Task } from '../src/client/index.js';
import { startGateway } from './helpers/gateway.js';
import { startRestartableGateway } from './helpers/restartable-gateway.js';
import { startRedis } from './helpers/redis.js';

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
  t.same(items[4], { taskId, seq: 5, end: 'ok', result: { seconds: 2 } });
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
