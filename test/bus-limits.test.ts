import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { TestSocket } from './helpers/test-socket.js';

t.test('a connection holds at most BUS_MAX_SUBSCRIPTIONS patterns; the next is refused and nothing else changes', async (t) => {
  const gw = await startGateway(t, { busMaxSubscriptions: 3 });
  const ws = await TestSocket.open(gw.busUrl);
  t.teardown(() => ws.close());
  for (const topic of ['a.one', 'a.two', 'a.*']) t.match(await ws.call({ action: 'subscribe', topic }), { ok: true });
  t.match(await ws.call({ action: 'subscribe', topic: 'a.one' }), { ok: true }, 'subscribing again to one it has is fine');
  t.match(await ws.call({ action: 'subscribe', topic: 'b.>' }), { error: /too many subscriptions/, code: 'RATE_LIMITED' });
  t.same(gw.app.bus.router.describe().connections[0]?.subscriptions.sort(), ['a.*', 'a.one', 'a.two']);

  await ws.call({ action: 'publish', message: { type: 'a.one', payload: 1 } });
  t.match((await ws.event('a.one')).event, { payload: 1 }, 'the connection still works, its subscriptions too');
  t.match(await ws.call({ action: 'unsubscribe', topic: 'a.two' }), { ok: true });
  t.match(await ws.call({ action: 'subscribe', topic: 'b.>' }), { ok: true }, 'after an unsubscribe there is room again');

  const other = await TestSocket.open(gw.busUrl);
  t.teardown(() => other.close());
  t.match(await other.call({ action: 'subscribe', topic: 'c.new' }), { ok: true }, 'the limit is per connection');
});
