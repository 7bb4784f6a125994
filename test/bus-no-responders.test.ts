import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

const redis = await startRedis(t);

t.test('a request nobody serves is refused NO_RESPONDERS at once; a served one is delivered', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url, busClusterChannel: 'nr-one' });
  const requester = await TestSocket.open(gw.busUrl);
  const responder = await TestSocket.open(gw.busUrl);
  t.teardown(() => [requester, responder].forEach((socket) => socket.close()));
  await requester.call({ action: 'subscribe', topic: 'inbox.me' });

  const request = { type: 'math.add', payload: { a: 1, b: 2 }, replyTo: 'inbox.me', correlationId: 'c1' };
  const refused = await requester.call({ action: 'publish', message: request });
  t.match(refused, { code: 'NO_RESPONDERS', error: /math\.add/ });
  const noReceipt = await requester.call({ action: 'publish', message: { type: 'math.add', payload: 0 } });
  t.same(noReceipt.delivered, 0, 'a plain publish to nobody is no error');

  await responder.call({ action: 'subscribe', topic: 'math.*' });
  const served = await requester.call({ action: 'publish', message: request });
  t.same(served, { ok: true, id: served.id, delivered: 1 });
  t.match((await responder.event('math.add')).event, { replyTo: 'inbox.me', correlationId: 'c1' });

  // Without an id nobody waits for a receipt: the v1 behaviour, delivered to no one and no error.
  await responder.call({ action: 'unsubscribe', topic: 'math.*' });
  requester.send({ action: 'publish', message: request });
  requester.send({ action: 'ping', id: 'barrier' });
  await requester.next((frame) => frame.id === 'barrier' && 'pong' in frame);
  t.notOk(requester.received.some((frame) => 'error' in frame), 'no error for a request without id');
});

t.test('across two gateways: a responder on B serves a request made on A', async (t) => {
  const a = await startGateway(t, { redisUrl: redis.url, busClusterChannel: 'nr-two', busClusterHeartbeatMs: 100 });
  const b = await startGateway(t, { redisUrl: redis.url, busClusterChannel: 'nr-two', busClusterHeartbeatMs: 100 });
  await until(() => (a.app.bus.router.describe().cluster as { instances: unknown[] } | undefined)?.instances.length === 2, 10_000);
  const requester = await TestSocket.open(a.busUrl);
  const responder = await TestSocket.open(b.busUrl);
  t.teardown(() => [requester, responder].forEach((socket) => socket.close()));
  const request = { type: 'svc.ask', payload: 1, replyTo: 'inbox.a', correlationId: 'x' };

  t.equal((await requester.call({ action: 'publish', message: request })).code, 'NO_RESPONDERS');
  // The subscribe's receipt waits until every gateway knows the pattern.
  await responder.call({ action: 'subscribe', topic: 'svc.>' });
  t.same((await requester.call({ action: 'publish', message: request })).ok, true);
  t.match((await responder.event('svc.ask')).event, { correlationId: 'x' });
});
