import { once } from 'node:events';
import t from 'tap';
import WebSocket from 'ws';
import { startGateway } from './helpers/gateway.js';
import { TestSocket, until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;

t.test('welcome frame names the client', async (t) => {
  const gw = await startGateway(t);
  const ws = new WebSocket(`${gw.busUrl}?name=stt`);
  const [data] = await once(ws, 'message');
  const welcome = JSON.parse(String(data)).welcome;
  t.equal(welcome.name, 'stt');
  t.equal(welcome.protocol, 3, 'version 3 of the protocol, versions 1 and 2 included');
  t.match(welcome.clientId, /^[0-9a-f-]{36}$/);
  ws.terminate();
});

t.test('publish reaches subscribers as a normalized event, sender included', async (t) => {
  const gw = await startGateway(t);
  const sub = await TestSocket.open(`${gw.busUrl}?name=cephalon`);
  const pub = await TestSocket.open(`${gw.busUrl}?name=watcher`);
  t.teardown(() => { sub.close(); pub.close(); });
  await sub.call({ action: 'subscribe', topic: 'fs.change' });
  await pub.call({ action: 'subscribe', topic: 'fs.change' });
  pub.send({ action: 'publish', message: { type: 'fs.change', payload: { path: 'a.ts' }, correlationId: 'c1', replyTo: 'agent.reply' } });
  const { event } = await sub.event('fs.change') as { event: Frame };
  t.same(Object.keys(event), ['type', 'source', 'payload', 'timestamp', 'correlationId', 'replyTo']);
  t.equal(event.source, 'watcher', 'source defaults to the connection name');
  t.same(event.payload, { path: 'a.ts' });
  t.ok(!Number.isNaN(Date.parse(event.timestamp as string)), 'timestamp is ISO-8601');
  t.ok(await pub.event('fs.change'), 'the publisher also subscribed, so it gets it too');
  pub.send({ action: 'publish', message: { type: 'fs.change', source: 'custom', timestamp: '2025-08-06T01:23:45Z' } });
  const second = (await sub.event('fs.change')).event as Frame;
  t.equal(second.source, 'custom');
  t.equal(second.timestamp, '2025-08-06T01:23:45Z');
  t.equal(second.payload, null);
});

t.test('wildcards, one delivery per connection, unsubscribe', async (t) => {
  const gw = await startGateway(t);
  const sub = await TestSocket.open(gw.busUrl);
  const pub = await TestSocket.open(gw.busUrl);
  t.teardown(() => { sub.close(); pub.close(); });
  for (const topic of ['heartbeat.*', 'heartbeat.>', '>', 'heartbeat.ping']) await sub.call({ action: 'subscribe', topic });
  await sub.call({ action: 'subscribe', topic: 'heartbeat.ping' });
  pub.send({ action: 'publish', message: { type: 'heartbeat.ping', payload: 1 } });
  pub.send({ action: 'publish', message: { type: 'heartbeat.ping', payload: 2 } });
  t.equal(((await sub.event()).event as Frame).payload, 1);
  t.equal(((await sub.event()).event as Frame).payload, 2, 'in publish order, once each');
  t.ok(await sub.nothing((f) => 'event' in f), 'no duplicates');

  for (const topic of ['heartbeat.*', '>', 'heartbeat.ping']) await sub.call({ action: 'unsubscribe', topic });
  pub.send({ action: 'publish', message: { type: 'heartbeat.down.deep', payload: 3 } });
  pub.send({ action: 'publish', message: { type: 'heartbeat.ping', payload: 4 } });
  t.equal(((await sub.event()).event as Frame).payload, 3, 'heartbeat.> still matches deeper topics');
  t.equal(((await sub.event()).event as Frame).payload, 4);
  await sub.call({ action: 'unsubscribe', topic: 'heartbeat.>' });
  pub.send({ action: 'publish', message: { type: 'heartbeat.ping', payload: 5 } });
  t.ok(await sub.nothing((f) => 'event' in f), 'nothing after the last unsubscribe');
});

t.test('receipts, ping, and every error code with the connection still usable', async (t) => {
  const gw = await startGateway(t);
  const ws = await TestSocket.open(gw.busUrl);
  t.teardown(() => ws.close());

  t.same(await ws.call({ action: 'subscribe', topic: 'a.b' }, 1), { ok: true, id: 1 });
  t.same(await ws.call({ action: 'publish', message: { type: 'a.b' } }, 'p'), { ok: true, id: 'p', delivered: 1 });
  await ws.event('a.b');

  ws.send({ action: 'ping', id: 7 });
  const pong = await ws.next((f) => 'pong' in f);
  t.equal(pong.id, 7);
  t.ok(Math.abs((pong.pong as number) - Date.now()) < 5000);
  t.ok(await ws.nothing((f) => f.id === 7), 'ping is answered by pong alone');

  ws.send('{not json');
  t.same(await ws.next(), { error: 'invalid json', code: 'INVALID_JSON' });
  ws.send({ action: 'dance' });
  t.same(await ws.next(), { error: 'unknown action', code: 'UNKNOWN_ACTION' });
  t.same(await ws.call({ action: 'dance' }, 9), { error: 'unknown action', code: 'UNKNOWN_ACTION', id: 9 });
  ws.send('[1,2]');
  t.match(await ws.next(), { code: 'INVALID_FRAME' });
  ws.send({ action: 'ping', id: { nested: true } });
  t.match(await ws.next(), { code: 'INVALID_FRAME' });
  t.match(await ws.call({ action: 'subscribe' }), { code: 'INVALID_FRAME' });
  t.match(await ws.call({ action: 'subscribe', topic: 'a..b' }), { code: 'INVALID_TOPIC' });
  t.match(await ws.call({ action: 'subscribe', topic: 'a.>.b' }), { code: 'INVALID_TOPIC' });
  t.match(await ws.call({ action: 'publish', message: { type: 'a.*' } }), { code: 'INVALID_TOPIC' });
  t.match(await ws.call({ action: 'publish', message: 'text' }), { code: 'INVALID_FRAME' });
  t.match(await ws.call({ action: 'publish' }), { code: 'INVALID_FRAME' });
  t.match(await ws.call({ action: 'publish', message: { type: 'a.b', replyTo: 'x.>' } }), { code: 'INVALID_TOPIC' });
  t.match(await ws.call({ action: 'publish', message: { type: 'a.b', source: 5 } }), { code: 'INVALID_FRAME' });
  ws.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  t.match(await ws.next(), { code: 'INVALID_FRAME' });

  t.same(await ws.call({ action: 'publish', message: { type: 'a.b', payload: 'still here' } }, 'last'), { ok: true, id: 'last', delivered: 1 });
  t.equal(((await ws.event('a.b')).event as Frame).payload, 'still here', 'usable after every error');
});

t.test('a frame over the size limit closes that connection with 1009', async (t) => {
  const gw = await startGateway(t, { busMaxFrameBytes: 4096 });
  const big = await TestSocket.open(gw.busUrl);
  const other = await TestSocket.open(gw.busUrl);
  t.teardown(() => other.close());
  big.send({ action: 'publish', message: { type: 'x', payload: 'y'.repeat(5000) } });
  t.equal((await big.closed).code, 1009);
  t.same(await other.call({ action: 'subscribe', topic: 'x' }, 1), { ok: true, id: 1 }, 'others unaffected');
});

t.test('a slow consumer is closed with 1008 while a healthy one gets everything', async (t) => {
  const gw = await startGateway(t, { busMaxBacklogBytes: 256 * 1024 });
  const slow = await TestSocket.open(gw.busUrl);
  const healthy = await TestSocket.open(gw.busUrl);
  const pub = await TestSocket.open(gw.busUrl);
  t.teardown(() => { healthy.close(); pub.close(); slow.close(); });
  await slow.call({ action: 'subscribe', topic: 'flood' });
  await healthy.call({ action: 'subscribe', topic: 'flood' });
  // Stop reading: the kernel buffers fill, then the gateway's backlog grows.
  (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();

  const total = 3000;
  const payload = 'z'.repeat(4096);
  let received = 0;
  const allReceived = new Promise<void>((resolve) => {
    healthy.ws.on('message', (data) => {
      if (String(data).startsWith('{"event"') && ++received === total) resolve();
    });
  });
  for (let i = 0; i < total; i++) {
    pub.send({ action: 'publish', message: { type: 'flood', payload: { i, payload } } });
    if (i % 100 === 99) await new Promise((r) => setImmediate(r));
  }
  await allReceived;
  t.equal(received, total, 'the healthy subscriber got every message');
  t.ok(gw.app.bus.router.counters.slowConsumersDropped >= 1, 'the slow one was dropped');
  (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
  const closed = await slow.closed;
  t.equal(closed.code, 1008);
  t.equal(closed.reason, 'slow consumer');
});

t.test('HTTP publish, GET /bus and GET /health', async (t) => {
  const gw = await startGateway(t);
  const sub = await TestSocket.open(`${gw.busUrl}?name=overlay`);
  t.teardown(() => sub.close());
  await sub.call({ action: 'subscribe', topic: 'agent.>' });

  const res = await fetch(`${gw.httpUrl}/bus/publish`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'agent.reply', payload: { text: 'hi' } }),
  });
  t.equal(res.status, 202);
  t.same(await res.json(), { ok: true, delivered: 1 });
  const event = (await sub.event('agent.reply')).event as Frame;
  t.equal(event.source, 'http');
  t.same(event.payload, { text: 'hi' });

  const bad = await fetch(`${gw.httpUrl}/bus/publish`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ type: 'a.*' }),
  });
  t.equal(bad.status, 400);
  t.match(await bad.json(), { code: 'INVALID_TOPIC' });
  const missing = await fetch(`${gw.httpUrl}/bus/publish`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ payload: 1 }),
  });
  t.equal(missing.status, 400);
  t.match(await missing.json(), { code: 'INVALID_FRAME' });
  const notJson = await fetch(`${gw.httpUrl}/bus/publish`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: '{oops',
  });
  t.equal(notJson.status, 400);
  t.match(await notJson.json(), { code: 'INVALID_JSON' });

  const state = await (await fetch(`${gw.httpUrl}/bus`)).json() as Frame;
  const connections = state.connections as Frame[];
  t.equal(connections.length, 1);
  t.match(connections[0], { name: 'overlay', subscriptions: ['agent.>'] });
  t.ok(typeof connections[0]?.ageMs === 'number');
  t.same(state.subscriptions, { 'agent.>': 1 });
  t.match(state.counters, { published: 1, delivered: 1 });

  const health = await fetch(`${gw.httpUrl}/health`);
  t.equal(health.status, 200);
  t.match(await health.json(), { status: 'ok', dependencies: { bus: { ok: true } } });
});

t.test('dead peers are dropped after two unanswered pings', async (t) => {
  const gw = await startGateway(t, { busPingIntervalMs: 100 });
  // autoPong off: this client never answers pings.
  const silent = await TestSocket.open(gw.busUrl, { autoPong: false });
  const alive = await TestSocket.open(gw.busUrl);
  t.teardown(() => alive.close());
  const closed = await Promise.race([silent.closed, new Promise((r) => setTimeout(() => r('timeout'), 3000))]);
  t.not(closed, 'timeout', 'the silent peer was dropped');
  await until(() => gw.app.bus.router.connections.size === 1, 5000, 'the silent peer gone from the router');
  // Barrier: three more pings answered by the live peer, more than the two a dead one is allowed.
  let pings = 0;
  alive.ws.on('ping', () => { pings++; });
  await until(() => pings >= 3, 5000, 'three pings to the answering peer');
  t.equal(gw.app.bus.router.connections.size, 1, 'the answering peer stays');
  t.same(await alive.call({ action: 'subscribe', topic: 'x' }, 2), { ok: true, id: 2 });
});

t.test('a connection that floods past its frame rate is refused, then closed', async (t) => {
  const gw = await startGateway(t, { busMaxFramesPerSecond: 50 });
  const ws = await TestSocket.open(gw.busUrl);
  for (let i = 0; i < 50; i++) ws.send({ action: 'ping' });
  ws.send({ action: 'ping' });
  t.match(await ws.next((f) => 'error' in f), { code: 'RATE_LIMITED' });
  for (let i = 0; i < 200; i++) ws.send({ action: 'ping' });
  const closed = await ws.closed;
  t.equal(closed.code, 1008);
});

t.test('app.close() sends 1001 and releases every socket', async (t) => {
  const gw = await startGateway(t);
  const a = await TestSocket.open(gw.busUrl);
  const b = await TestSocket.open(gw.busUrl);
  await a.call({ action: 'subscribe', topic: 'x' });
  const started = Date.now();
  await gw.app.close();
  t.equal((await a.closed).code, 1001);
  t.equal((await b.closed).code, 1001);
  t.ok(Date.now() - started < 3000, 'close does not hang');
  t.equal(gw.app.bus.router.connections.size, 0);
});
