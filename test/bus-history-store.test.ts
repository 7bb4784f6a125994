import { Redis } from 'ioredis';
import t from 'tap';
import { StreamStore } from '../src/bus/history/stream-store.js';
import { startRedis } from './helpers/redis.js';
import { startRestartableGateway } from './helpers/restartable-gateway.js';
import { TestSocket, until } from './helpers/test-socket.js';

const silent = { debug() {}, info() {}, warn() {}, error() {} };

t.test('a rule with maxAgeSeconds loses its old events to the age trim', async (t) => {
  const redis = await startRedis(t);
  const client = new Redis(redis.url);
  t.teardown(() => client.disconnect());
  const store = new StreamStore(client, 'test', [{ topics: 'old.>', maxEvents: 1000, maxAgeSeconds: 1 }], silent);
  t.teardown(() => store.stop());
  for (let n = 0; n < 5; n++) await store.append(0, 'old.news', `{"n":${n}}`);
  t.equal(await client.xlen('test:history:old.>'), 5);
  store.startAgeTrim(100);
  await until(async () => (await client.xlen('test:history:old.>')) === 0, 5000);
  const state = await store.state(0);
  t.same([state.firstOffset, state.trimmed], [null, true], 'an emptied stream still knows it was trimmed (gap)');
  t.not(state.lastOffset, '0-0', 'and its newest offset');
});

t.test('while Redis is down a retained publish is refused UNAVAILABLE and reaches no one; plain topics go on', async (t) => {
  const gw = await startRestartableGateway(t, { busHistory: [{ topics: 'orders.>', maxEvents: 1000, maxAgeSeconds: null }] });
  const pub = await TestSocket.open(gw.busUrl);
  const sub = await TestSocket.open(gw.busUrl);
  t.teardown(() => { pub.close(); sub.close(); });
  await sub.call({ action: 'subscribe', topic: '>' });
  await gw.redis.stop();
  const refused = await pub.call({ action: 'publish', message: { type: 'orders.created', payload: 'lost?' } });
  t.equal(refused.code, 'UNAVAILABLE', 'the publisher is told: it may send it again');
  const plain = await pub.call({ action: 'publish', message: { type: 'fs.change', payload: 'plain' } });
  t.equal(plain.delivered, 1);
  const first = await sub.event();
  t.equal((first.event as { payload: unknown }).payload, 'plain', 'the refused event was delivered to no one');
  const http = await fetch(`${gw.httpUrl}/bus/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"type":"orders.created"}' });
  t.equal(http.status, 503);

  await gw.redis.restart();
  await until(async () => {
    const again = await pub.call({ action: 'publish', message: { type: 'orders.created', payload: 'again' } });
    return again.ok === true;
  }, 10_000);
  t.equal(((await sub.event('orders.created')).event as { payload: unknown }).payload, 'again');
});
