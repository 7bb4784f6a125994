import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { TestSocket, until } from './helpers/test-socket.js';

// GET /metrics after a streamed task (bus protocol v3), over raw /bus frames on a real gateway.
const gw = await startGateway(t);

/** One sample's value from Prometheus text, or undefined when the series is absent. */
function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function scrape(): Promise<string> {
  const res = await fetch(`${gw.httpUrl}/metrics`);
  t.equal(res.status, 200);
  return res.text();
}

async function open(name: string): Promise<TestSocket> {
  const socket = await TestSocket.open(`${gw.busUrl}?name=${name}`);
  t.teardown(() => socket.close());
  return socket;
}

t.test('a streamed task counts its chunks and bytes per queue, its follower while it follows, and the lag of each chunk sent', async (t) => {
  const before = await scrape();
  t.equal(sample(before, 'brainstem_task_streams_followed'), 0);
  t.equal(sample(before, 'brainstem_task_stream_followers'), 0);
  t.equal(sample(before, 'brainstem_task_stream_follower_lag_count'), 0);

  const requester = await open('metrics-requester');
  const worker = await open('metrics-worker');
  const { taskId } = await requester.call({ action: 'enqueue', queue: 'llm.generate', task: {}, opts: { stream: true } }) as { taskId: string };
  t.match(await requester.call({ action: 'follow', taskId }), { ok: true });
  worker.send({ action: 'pull', queue: 'llm.generate' });
  await worker.next((f) => 'task' in f);

  const following = await scrape();
  t.equal(sample(following, 'brainstem_task_streams_followed'), 1);
  t.equal(sample(following, 'brainstem_task_stream_followers'), 1);
  t.equal(sample(following, 'brainstem_task_stream_held_receipts'), 0);

  // Three chunks of JSON text 5, 7 and 2 bytes: "Hel", {"a":1}, 42.
  for (const data of ['Hel', { a: 1 }, 42]) t.match(await worker.call({ action: 'chunk', taskId, data }), { ok: true });
  await worker.call({ action: 'ack', taskId, result: 'done' });
  await requester.next((f) => (f.chunk as { end?: string } | undefined)?.end === 'ok');
  await until(async () => sample(await scrape(), 'brainstem_task_stream_followers') === 0, 5000, 'the follow to end with the stream');

  const after = await scrape();
  t.equal(sample(after, 'brainstem_task_stream_chunks_total', 'queue="llm.generate"'), 3);
  t.equal(sample(after, 'brainstem_task_stream_chunk_bytes_total', 'queue="llm.generate"'), 5 + 7 + 2);
  t.equal(sample(after, 'brainstem_task_stream_follower_lag_count'), 3, 'one lag per chunk sent, the end not counted');
  t.ok((sample(after, 'brainstem_task_stream_follower_lag_bucket', 'le="16"') ?? 0) === 3, 'a follower reading along is a few seqs behind at most');
  t.equal(sample(after, 'brainstem_task_streams_followed'), 0);
  t.match(after, /# HELP brainstem_task_stream_follower_lag /);
});

t.test('open streams: those of tasks enqueued with opts.stream and not yet ended, read from Redis', async (t) => {
  // A gateway of its own: its first scrape reads the figure afresh.
  const fresh = await startGateway(t, { queuePrefix: 'open-streams' });
  const requester = await TestSocket.open(`${fresh.busUrl}?name=open-requester`);
  const worker = await TestSocket.open(`${fresh.busUrl}?name=open-worker`);
  t.teardown(() => [requester, worker].forEach((socket) => socket.close()));
  const ids: string[] = [];
  for (const opts of [{ stream: true }, { stream: true }, {}]) {
    ids.push((await requester.call({ action: 'enqueue', queue: 'open.jobs', task: {}, opts })).taskId as string);
  }
  worker.send({ action: 'pull', queue: 'open.jobs' });
  await worker.next((f) => 'task' in f);
  await worker.call({ action: 'ack', taskId: ids[0] });
  t.match(await requester.call({ action: 'follow', taskId: ids[0] }), { ok: true });
  await requester.next((f) => (f.chunk as { end?: string } | undefined)?.end === 'ok');
  const text = await (await fetch(`${fresh.httpUrl}/metrics`)).text();
  t.equal(sample(text, 'brainstem_task_streams_open'), 1, 'the ended stream is not counted, nor the task that streams nothing');
});
