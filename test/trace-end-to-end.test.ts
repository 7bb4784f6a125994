import t from 'tap';
import { BrokerClient, type BusEvent } from '../src/client/index.js';
import { startGateway } from './helpers/gateway.js';
import { startOtlpReceiver } from './helpers/otlp-receiver.js';
import { startRedis } from './helpers/redis.js';
import { until } from './helpers/test-socket.js';
import { startDriver } from './python/python-process.js';

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const TRACEPARENT = `00-${TRACE_ID}-b7ad6b7169203331-01`;
const parts = (traceparent: unknown) => String(traceparent).split('-');

t.test('one trace across services: a TS publish, a TS handler that enqueues, a Python worker, the reply; spans with the right parents', async (t) => {
  const receiver = await startOtlpReceiver(t);
  const redis = await startRedis(t);
  const gw = await startGateway(t, { redisUrl: redis.url, otelEndpoint: receiver.url });
  const clients: BrokerClient[] = [];
  t.teardown(() => Promise.all(clients.map((c) => c.close())));
  const open = async (id: string) => {
    const c = new BrokerClient({ url: gw.busUrl, id });
    clients.push(c);
    await c.connect();
    return c;
  };
  const origin = await open('storefront');
  const planner = await open('planner');

  // The Python worker completes every `fulfil` task.
  const python = await startDriver(t, gw.busUrl, 'fulfiller');
  await python.call({ op: 'work', queue: 'fulfil' });

  // The planner's handler enqueues a task for the order it hears of: the
  // client gives the task the handled event's trace, with a span of its own.
  const seenByPlanner: BusEvent[] = [];
  await planner.subscribe('order.placed', async (event) => {
    seenByPlanner.push(event);
    await planner.enqueue('fulfil', { order: event.payload }, { replyTo: 'order.fulfilled' });
  });
  const replies: BusEvent[] = [];
  await origin.subscribe('order.fulfilled', (event) => { replies.push(event); });

  await origin.publish('order.placed', { id: 7 }, { traceparent: TRACEPARENT });
  await until(() => replies.length === 1, 20_000, 'the reply reaching the storefront');

  t.equal(seenByPlanner[0]?.traceparent, TRACEPARENT, 'the subscriber gets the publisher\'s traceparent');
  const reply = replies[0] as BusEvent;
  const [, replyTrace, taskSpan] = parts(reply.traceparent);
  t.equal(replyTrace, TRACE_ID, 'the reply is in the same trace');
  t.not(taskSpan, 'b7ad6b7169203331', "the task (and its reply) has the planner's span, not the storefront's");
  t.match(reply.payload, { processedBy: String }, 'completed by the Python worker');

  await Promise.all(clients.map((c) => c.close()));
  clients.length = 0;
  await python.call({ op: 'close' });
  await gw.app.close();
  const spans = receiver.spans();
  const named = (name: string) => spans.find((span) => span.name === name);
  t.match(named('publish order.placed'), { traceId: TRACE_ID, parentSpanId: 'b7ad6b7169203331' }, 'the publish: a child of the storefront span');
  t.match(named('wait fulfil'), { traceId: TRACE_ID, parentSpanId: taskSpan }, "the task's wait: a child of the planner's span");
  t.match(named('task fulfil'), { traceId: TRACE_ID, parentSpanId: taskSpan }, "the Python worker's attempt: a child of the planner's span");
  const ids = new Set(spans.filter((span) => span.traceId === TRACE_ID).map((span) => span.spanId));
  t.ok(ids.size >= 3 && !ids.has('b7ad6b7169203331') && !ids.has(taskSpan as string), 'every hop its own span id');
});
