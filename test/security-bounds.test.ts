import t from 'tap';
import { edgeConfig, tokenSpec } from './helpers/edge.js';
import { startGateway } from './helpers/gateway.js';
import { rawRequest, upgradeStatus } from './helpers/raw-http.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

const redis = await startRedis(t);

/** A WebSocket handshake as a plain request, to read the refusal's body. */
const UPGRADE = { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' };

t.test('one client address past BUS_MAX_CONNECTIONS_PER_CLIENT gets 429 at the upgrade; the others do not notice', async (t) => {
  // Loopback is the default case, so it is not exempt: 127.0.0.2 and .3 are other clients of this machine.
  const gw = await startGateway(t, { redisUrl: redis.url, busMaxConnectionsPerClient: 3 });
  const greedy: TestSocket[] = [];
  t.teardown(() => greedy.forEach((socket) => socket.close()));
  for (let i = 0; i < 3; i++) greedy.push(await TestSocket.open(`${gw.busUrl}?name=greedy-${i}`, { localAddress: '127.0.0.2' }));

  const refused = await rawRequest(gw.busUrl.replace('ws:', 'http:'), { headers: UPGRADE, localAddress: '127.0.0.2' });
  t.equal(refused.status, 429);
  t.same(JSON.parse(refused.body), { error: 'too many connections from this address: at most 3 open at once', code: 'RATE_LIMITED' });
  t.equal(await upgradeStatus(`ws://127.0.0.1:${gw.port}/heartbeat`, { localAddress: '127.0.0.2' }), 429, 'every WebSocket counts, /heartbeat too');
  t.equal((await rawRequest(`${gw.httpUrl}/health`, { localAddress: '127.0.0.2' })).status, 200, 'plain HTTP from it is not affected');

  const neighbour = await TestSocket.open(`${gw.busUrl}?name=neighbour`, { localAddress: '127.0.0.3' });
  t.teardown(() => neighbour.close());
  t.match(await neighbour.call({ action: 'subscribe', topic: 'n.>' }), { ok: true }, 'another address connects and works');
  t.equal(await upgradeStatus(gw.busUrl), 101, 'and so does 127.0.0.1');
  greedy[0]?.send({ action: 'ping' });
  t.match(await greedy[0]?.next((frame) => 'pong' in frame), { pong: Number }, 'the capped client keeps the connections it has');

  greedy.pop()?.close();
  await until(async () => (await upgradeStatus(gw.busUrl, { localAddress: '127.0.0.2' })) === 101, 5000);
  t.pass('a closed connection frees its slot');
});

t.test('the cap holds per token too, across addresses', async (t) => {
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    busMaxConnectionsPerClient: 2,
    edge: edgeConfig({ tokens: [tokenSpec('a', 'a-token-0123456789', { subscribe: ['>'] }), tokenSpec('b', 'b-token-0123456789')] }),
  });
  const url = (token: string) => `${gw.busUrl}?token=${token}`;
  t.equal(await upgradeStatus(url('a-token-0123456789'), { localAddress: '127.0.0.4' }), 101);
  const held = [
    await TestSocket.open(url('a-token-0123456789'), { localAddress: '127.0.0.4' }),
    await TestSocket.open(url('a-token-0123456789'), { localAddress: '127.0.0.5' }),
  ];
  t.teardown(() => held.forEach((socket) => socket.close()));
  const refused = await rawRequest(url('a-token-0123456789').replace('ws:', 'http:'), { headers: UPGRADE, localAddress: '127.0.0.6' });
  t.equal(refused.status, 429, 'a third connection of the token, from a fresh address');
  t.match(JSON.parse(refused.body), { error: /from this token/, code: 'RATE_LIMITED' });
  t.equal(await upgradeStatus(url('b-token-0123456789'), { localAddress: '127.0.0.6' }), 101, 'another token is not affected');
  t.equal(await upgradeStatus(`${gw.busUrl}?token=nope-0123456789`, { localAddress: '127.0.0.6' }), 401, 'an unknown token is refused before it counts');
});

t.test('the patterns of one connection are bounded in bytes (BUS_MAX_PATTERN_BYTES)', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url, busMaxPatternBytes: 1024 });
  const ws = await TestSocket.open(gw.busUrl);
  t.teardown(() => ws.close());
  const pattern = (i: number) => `p${i}.${'x'.repeat(197)}`;
  for (let i = 0; i < 5; i++) t.match(await ws.call({ action: 'subscribe', topic: pattern(i) }), { ok: true });
  t.match(await ws.call({ action: 'subscribe', topic: pattern(5) }), { error: 'too many subscriptions: at most 1024 bytes of patterns per connection', code: 'RATE_LIMITED' });
  t.match(await ws.call({ action: 'subscribe', topic: 'short.one' }), { ok: true }, 'a short one still fits');
  t.equal(gw.app.bus.router.describe().connections[0]?.subscriptionCount, 6);
  t.match(await ws.call({ action: 'unsubscribe', topic: pattern(0) }), { ok: true });
  t.match(await ws.call({ action: 'subscribe', topic: pattern(5) }), { ok: true }, 'an unsubscribe makes room');
  const other = await TestSocket.open(gw.busUrl);
  t.teardown(() => other.close());
  t.match(await other.call({ action: 'subscribe', topic: pattern(9) }), { ok: true }, 'per connection');
});

t.test('GET /bus answers a page of the connections', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url });
  const sockets: TestSocket[] = [];
  t.teardown(() => sockets.forEach((socket) => socket.close()));
  for (let i = 0; i < 5; i++) sockets.push(await TestSocket.open(`${gw.busUrl}?name=c${i}`));
  const page = await (await fetch(`${gw.httpUrl}/bus?offset=1&limit=2`)).json() as { connections: { name: string }[]; page: object; counters: { connections: number } };
  t.same(page.connections.map((c) => c.name), ['c1', 'c2'], 'oldest first, from the offset');
  t.same(page.page, { offset: 1, limit: 2, total: 5 });
  t.equal(page.counters.connections, 5, 'the counts are of all of them');
  const all = await (await fetch(`${gw.httpUrl}/bus`)).json() as { connections: unknown[]; page: object };
  t.same(all.page, { offset: 0, limit: 200, total: 5 }, 'a default page');
  t.equal(all.connections.length, 5);
  t.equal((await fetch(`${gw.httpUrl}/bus?limit=5000`)).status, 400, 'a page has a bounded size');
});
