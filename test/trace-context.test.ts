import t from 'tap';
import { isTraceparent } from '../src/trace/trace-context.js';
import { startGateway } from './helpers/gateway.js';
import { startOtlpReceiver } from './helpers/otlp-receiver.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket } from './helpers/test-socket.js';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

t.test('traceparent: the W3C format, nothing looser', async (t) => {
  t.ok(isTraceparent(TRACEPARENT));
  t.ok(isTraceparent('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later'), 'a later version may add fields');
  for (const bad of [
    '', 'x', TRACEPARENT.toUpperCase(), `${TRACEPARENT}-extra`,
    'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`, `00-4bf92f3577b34da6a3ce929d0e0e4736-${'0'.repeat(16)}-01`,
    '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01', 42, null,
  ]) t.notOk(isTraceparent(bad), JSON.stringify(bad));
});

t.test('a message keeps its traceparent; a malformed one is INVALID_FRAME and the connection goes on', async (t) => {
  const redis = await startRedis(t);
  const gw = await startGateway(t, { redisUrl: redis.url });
  const sub = await TestSocket.open(gw.busUrl);
  const pub = await TestSocket.open(gw.busUrl);
  t.teardown(() => [sub, pub].forEach((socket) => socket.close()));
  await sub.call({ action: 'subscribe', topic: 'trace.>' });

  const refused = await pub.call({ action: 'publish', message: { type: 'trace.bad', traceparent: 'not-a-trace' } });
  t.equal(refused.code, 'INVALID_FRAME');
  const receipt = await pub.call({ action: 'publish', message: { type: 'trace.ok', payload: 1, traceparent: TRACEPARENT } });
  t.equal(receipt.delivered, 1);
  const { event } = await sub.event() as { event: Record<string, unknown> };
  t.equal(event.type, 'trace.ok', 'the refused message reached no one (the first event is the later one)');
  t.equal(event.traceparent, TRACEPARENT);
});

t.test('with OTEL_EXPORTER_OTLP_ENDPOINT set, a publish is exported as a span under its traceparent', async (t) => {
  const receiver = await startOtlpReceiver(t);

  const redis = await startRedis(t);
  const gw = await startGateway(t, { redisUrl: redis.url, otelEndpoint: receiver.url });
  const pub = await TestSocket.open(gw.busUrl);
  t.teardown(() => pub.close());
  await pub.call({ action: 'publish', message: { type: 'trace.exported', traceparent: TRACEPARENT } });
  await pub.call({ action: 'publish', message: { type: 'trace.untraced' } });
  pub.close();
  // Closing flushes the exporter's batch.
  await gw.app.close();

  const spans = receiver.spans();
  t.equal(spans.length, 1, 'only the traced publish is exported');
  t.match(spans[0], { name: 'publish trace.exported', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentSpanId: '00f067aa0ba902b7' });
  t.not(spans[0]?.spanId, '00f067aa0ba902b7', 'the gateway span has its own id');
});

t.test("a task keeps its enqueue's traceparent: on the task frame, its queue.* events and its reply; spans for its wait and its attempt", async (t) => {
  const receiver = await startOtlpReceiver(t);

  const redis = await startRedis(t);
  const gw = await startGateway(t, { redisUrl: redis.url, otelEndpoint: receiver.url });
  const requester = await TestSocket.open(gw.busUrl);
  const worker = await TestSocket.open(`${gw.busUrl}?name=worker`);
  t.teardown(() => [requester, worker].forEach((socket) => socket.close()));
  await requester.call({ action: 'subscribe', topic: 'queue.completed' });
  await requester.call({ action: 'subscribe', topic: 'reply.me' });

  const refused = await requester.call({ action: 'enqueue', queue: 'traced', task: {}, opts: { traceparent: 'nope' } });
  t.equal(refused.code, 'INVALID_FRAME', 'a malformed traceparent is refused, nothing stored');
  const { taskId } = await requester.call({ action: 'enqueue', queue: 'traced', task: { n: 1 }, opts: { replyTo: 'reply.me', traceparent: TRACEPARENT } });
  worker.send({ action: 'pull', queue: 'traced' });
  const { task } = await worker.next((frame) => 'task' in frame) as { task: Record<string, unknown> };
  t.match(task, { id: taskId, traceparent: TRACEPARENT }, 'the task frame carries it');
  await worker.call({ action: 'ack', taskId, result: { done: true } });

  const completed = (await requester.event('queue.completed')).event as Record<string, unknown>;
  t.match(completed, { payload: { taskId }, traceparent: TRACEPARENT });
  const reply = (await requester.event('reply.me')).event as Record<string, unknown>;
  t.match(reply, { correlationId: taskId, payload: { done: true }, traceparent: TRACEPARENT });

  requester.close();
  worker.close();
  await gw.app.close();
  const spans = receiver.spans();
  const byName = new Map(spans.map((span) => [span.name, span]));
  for (const name of ['wait traced', 'task traced']) {
    t.match(byName.get(name), { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentSpanId: '00f067aa0ba902b7' }, `${name}: a child of the enqueue's span`);
  }
});
