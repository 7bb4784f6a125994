import t from 'tap';
import { decodeBinaryFrame, encodeBinaryFrame } from '../src/bus/binary-frame.js';
import { startGateway } from './helpers/gateway.js';
import { startOtlpReceiver, type ReceivedSpan } from './helpers/otlp-receiver.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket } from './helpers/test-socket.js';

// A streamed task's trace context, from its enqueue to its chunks (bus protocol v3 and spans).
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

type Frame = Record<string, unknown>;

function attributesOf(span: ReceivedSpan | undefined): Record<string, unknown> {
  const attributes = (span?.attributes ?? []) as { key: string; value: Record<string, unknown> }[];
  return Object.fromEntries(attributes.map(({ key, value }) => [key, Object.values(value)[0]]));
}

t.test("a traced streamed task: followers get the enqueue's traceparent on the first frame of a follow and in the SSE headers; spans for the stream and each follow", async (t) => {
  const receiver = await startOtlpReceiver(t);
  const redis = await startRedis(t);
  const gw = await startGateway(t, { redisUrl: redis.url, otelEndpoint: receiver.url });
  const requester = await TestSocket.open(`${gw.busUrl}?name=requester`);
  const worker = await TestSocket.open(`${gw.busUrl}?name=worker`);
  t.teardown(() => [requester, worker].forEach((socket) => socket.close()));

  const { taskId } = await requester.call({ action: 'enqueue', queue: 'speak', task: {}, opts: { stream: true, traceparent: TRACEPARENT } }) as { taskId: string };
  const { taskId: plainId } = await requester.call({ action: 'enqueue', queue: 'speak', task: {}, opts: { stream: true } }) as { taskId: string };
  t.match(await requester.call({ action: 'follow', taskId }), { ok: true, traceparent: TRACEPARENT }, 'the follow receipt carries it');
  const plainReceipt = await requester.call({ action: 'follow', taskId: plainId });
  t.equal(plainReceipt.traceparent, undefined, 'an untraced task has none');

  const sse = await fetch(`${gw.httpUrl}/queues/speak/tasks/${taskId}/stream`);
  t.equal(sse.headers.get('traceparent'), TRACEPARENT, 'the SSE response carries it as a header');

  worker.send({ action: 'pull', queue: 'speak' });
  worker.send({ action: 'pull', queue: 'speak' });
  await worker.next((frame) => 'task' in frame);
  await worker.next((frame) => 'task' in frame);
  await worker.call({ action: 'chunk', taskId, data: 'first' });
  await worker.call({ action: 'chunk', taskId, data: 'second' });
  await worker.call({ action: 'chunk', taskId: plainId, data: 'plain' });
  await worker.call({ action: 'ack', taskId });
  await worker.call({ action: 'ack', taskId: plainId });

  const chunks: Frame[] = [];
  const plainChunks: Frame[] = [];
  while (chunks.length < 3 || plainChunks.length < 2) {
    const { chunk } = await requester.next((frame) => 'chunk' in frame) as { chunk: Frame };
    (chunk.taskId === taskId ? chunks : plainChunks).push(chunk);
  }
  t.equal(chunks[0]?.traceparent, TRACEPARENT, 'the first frame of the follow carries it');
  t.same(chunks.slice(1).map((chunk) => chunk.traceparent), [undefined, undefined], 'the frames after it do not');
  t.same(plainChunks.map((chunk) => chunk.traceparent), [undefined, undefined], "an untraced task's frames carry none");

  // A follow of another traced stream gets it on its first frame, a binary one here.
  const { taskId: binaryId } = await requester.call({ action: 'enqueue', queue: 'speak', task: {}, opts: { stream: true, traceparent: TRACEPARENT } }) as { taskId: string };
  worker.send({ action: 'pull', queue: 'speak' });
  await worker.next((frame) => 'task' in frame);
  worker.ws.send(encodeBinaryFrame({ action: 'chunk', taskId: binaryId, id: 'b1' }, new Uint8Array([1, 2, 3])), { binary: true });
  t.match(await worker.next((frame) => frame.id === 'b1'), { ok: true, seq: 1 });
  const resumed = await TestSocket.open(gw.busUrl);
  t.teardown(() => resumed.close());
  await resumed.call({ action: 'follow', taskId: binaryId });
  const binary = decodeBinaryFrame((await resumed.next((frame) => 'binary' in frame)).binary as Buffer);
  t.match(binary, { header: { chunk: { taskId: binaryId, seq: 1, traceparent: TRACEPARENT } } }, "a binary chunk's header carries it");
  await worker.call({ action: 'ack', taskId: binaryId });

  await sse.text();
  requester.close();
  worker.close();
  resumed.close();
  // Closing flushes the exporter's batch.
  await gw.app.close();
  const spans = receiver.spans();
  const streamSpans = spans.filter((span) => span.name === 'stream speak');
  t.equal(streamSpans.length, 2, 'one span per traced stream, none for the untraced one');
  const stream = streamSpans.find((span) => attributesOf(span)['brainstem.task_id'] === taskId);
  t.match(stream, { traceId: TRACE_ID, parentSpanId: '00f067aa0ba902b7' }, "the stream's span: a child of the enqueue's");
  t.match(attributesOf(stream), { 'brainstem.stream.chunks': '2', 'brainstem.stream.end': 'ok' });
  const follows = spans.filter((span) => span.name === 'follow speak' && attributesOf(span)['brainstem.task_id'] === taskId);
  t.equal(follows.length, 2, 'a span for each follow of it (the bus one and the SSE one)');
  for (const follow of follows) {
    t.match(follow, { traceId: TRACE_ID, parentSpanId: '00f067aa0ba902b7' });
    t.match(attributesOf(follow), { 'brainstem.stream.sent': '3', 'brainstem.stream.to_end': true });
  }
});
