import { once } from 'node:events';
import t from 'tap';
import { WebSocketServer } from 'ws';
import { BrokerClient, BrokerError, type BusEvent } from '../src/client/index.js';
import { startGateway } from './helpers/gateway.js';
import { freePort } from './helpers/ports.js';
import { startRestartableGateway } from './helpers/restartable-gateway.js';
import { until } from './helpers/test-socket.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

function client(t: Teardown, url: string, options: ConstructorParameters<typeof BrokerClient>[0] = {}): BrokerClient {
  const c = new BrokerClient({ url, ...options });
  t.teardown(() => c.close());
  return c;
}

/** ws servers wait for their connections at close: end them first. */
function closeServer(wss: WebSocketServer): Promise<void> {
  for (const socket of wss.clients) socket.terminate();
  return new Promise((resolve) => wss.close(() => resolve()));
}

async function rejection(promise: Promise<unknown>): Promise<BrokerError> {
  try {
    await promise;
  } catch (err) {
    return err as BrokerError;
  }
  throw new Error('expected a rejection');
}

t.test('subscribe and publish: wildcards as at the gateway, each handler sees an event once', async (t) => {
  const gw = await startGateway(t);
  const watcher = client(t, gw.busUrl, { id: 'watcher' });
  const cephalon = client(t, gw.busUrl, { id: 'cephalon' });
  await watcher.connect();
  await cephalon.connect();
  t.match(cephalon.clientId, /^[0-9a-f-]{36}$/, 'the welcome frame names the connection');

  const wide: BusEvent[] = [];
  const exact: BusEvent[] = [];
  const onWide = (event: BusEvent) => { wide.push(event); };
  await cephalon.subscribe('fs.*', onWide);
  await cephalon.subscribe('fs.>', onWide);
  await cephalon.subscribe('fs.change', (event) => { exact.push(event); });

  const receipt = await watcher.publish('fs.change', { path: 'a.ts' }, { correlationId: 'c1' });
  t.same(receipt, { delivered: 1 }, 'one connection subscribed, however many patterns');
  await watcher.publish('fs.change.deep', { path: 'b.ts' });
  await until(() => wide.length === 2);
  t.same(wide.map((e) => e.type), ['fs.change', 'fs.change.deep'], 'the shared handler ran once per event');
  t.same(exact.map((e) => e.type), ['fs.change'], 'fs.change does not match fs.change.deep');
  t.equal(wide[0]?.source, 'watcher', 'source defaults to the publisher id');
  t.equal(wide[0]?.correlationId, 'c1');
  t.same(wide[0]?.payload, { path: 'a.ts' });

  await cephalon.unsubscribe('fs.>');
  await cephalon.unsubscribe('fs.change');
  await watcher.publish('fs.change.deep', 3);
  await watcher.publish('fs.created', 4);
  await until(() => wide.length === 3);
  t.equal(wide[2]?.payload, 4, 'fs.* still matches; fs.> is gone');
  t.equal(exact.length, 1);
});

t.test('request resolves with the reply; with no responder it rejects NO_RESPONDERS, with a silent one at its timeout', async (t) => {
  const gw = await startGateway(t);
  const asker = client(t, gw.busUrl, { id: 'cephalon' });
  const adder = client(t, gw.busUrl, { id: 'adder' });
  await asker.connect();
  await adder.connect();
  await adder.respond('math.add', (event) => {
    const { a, b } = event.payload as { a: number; b: number };
    return { sum: a + b };
  });
  const replies = await Promise.all([1, 2, 3].map((a) => asker.request('math.add', { a, b: 10 }, { timeout: 2000 })));
  t.same(replies.map((r) => r.payload), [{ sum: 11 }, { sum: 12 }, { sum: 13 }], 'each reply reaches its own request');
  t.equal(replies[0]?.source, 'adder');

  // The gateway refuses it at once: its timeout is far beyond the test's own.
  const nobody = await rejection(asker.request('nobody.listens', {}, { timeout: 600_000 }));
  t.equal(nobody.code, 'NO_RESPONDERS');

  await adder.subscribe('silent.service', () => {});
  const started = Date.now();
  const err = await rejection(asker.request('silent.service', {}, { timeout: 300 }));
  const elapsed = Date.now() - started;
  t.equal(err.code, 'TIMEOUT');
  t.match(err.message, /no reply to silent\.service within 300 ms/);
  t.ok(elapsed >= 290, `rejected at its timeout, not before (${elapsed} ms)`);
});

t.test('bad input is refused with a code, before anything is sent', async (t) => {
  const gw = await startGateway(t);
  const c = client(t, gw.busUrl);
  await c.connect();
  t.equal((await rejection(c.publish('fs.*', {}))).code, 'INVALID_TOPIC');
  t.equal((await rejection(c.subscribe('fs..x', () => {}))).code, 'INVALID_TOPIC');
  t.equal((await rejection(c.enqueue('bad queue', {}))).code, 'INVALID_QUEUE');
  t.throws(() => c.work('q', () => {}, { concurrency: 0 }), { code: 'INVALID_FRAME' });
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  t.equal((await rejection(c.publish('fs.change', cyclic))).code, 'INVALID_FRAME');
  const big = 'x'.repeat(1024 * 1024);
  t.equal((await rejection(c.publish('fs.change', big))).code, 'PAYLOAD_TOO_LARGE', 'refused here, not by a 1009 close');
  t.same(await c.publish('fs.change', 'still fine'), { delivered: 0 }, 'the connection is still usable');
});

t.test('connect fails fast when nothing listens, unless asked to wait for the gateway', async (t) => {
  const port = await freePort();
  const url = `ws://127.0.0.1:${port}/bus`;
  const eager = client(t, url);
  const err = await rejection(eager.connect());
  t.equal(err.code, 'CONNECT_FAILED');
  t.match(err.message, /ECONNREFUSED/);

  const patient = client(t, `http://127.0.0.1:${port}`, { reconnect: { initialDelayMs: 40, maxDelayMs: 400 } });
  const delays: number[] = [];
  patient.on('reconnecting', ({ delayMs }) => delays.push(delayMs));
  const connected = patient.connect({ retry: true });
  await until(() => delays.length >= 5, 5000);
  // Equal jitter: attempt n waits between half and all of min(400, 40·2^(n-1)).
  delays.slice(0, 5).forEach((delay, i) => {
    const ceiling = Math.min(400, 40 * 2 ** i);
    t.ok(delay >= ceiling / 2 && delay <= ceiling, `attempt ${i + 1} waited ${delay} ms (ceiling ${ceiling})`);
  });
  const wss = new WebSocketServer({ port, host: '127.0.0.1' });
  t.teardown(() => closeServer(wss));
  const accepted = once(wss, 'connection') as Promise<[unknown, { url: string }]>;
  await connected;
  t.ok(patient.connected, 'connected once something listens');
  const [, request] = await accepted;
  const asked = new URL(request.url, 'http://x');
  t.equal(asked.pathname, '/bus', 'the http:// URL was turned into ws://…/bus');
  t.equal(asked.searchParams.get('pid'), String(process.pid), 'the Node client sends its pid');
});

t.test('the offline buffer holds frames until connected and refuses past its bound', async (t) => {
  const gw = await startGateway(t);
  const listener = client(t, gw.busUrl);
  await listener.connect();
  const seen: unknown[] = [];
  await listener.subscribe('note.>', (event) => { seen.push(event.payload); });

  const early = client(t, gw.busUrl, { maxBufferedFrames: 3 });
  const sent = [1, 2, 3].map((n) => early.publish('note.added', n));
  t.equal(early.bufferedFrames, 3);
  const overflow = await rejection(early.publish('note.added', 4));
  t.equal(overflow.code, 'BUFFER_FULL', 'an error, not silent loss');
  await early.connect();
  t.same(await Promise.all(sent), [{ delivered: 1 }, { delivered: 1 }, { delivered: 1 }]);
  await until(() => seen.length === 3);
  t.same(seen, [1, 2, 3], 'sent in order once connected');
});

t.test('gateway restart: the client reconnects, resubscribes and sends what waited', async (t) => {
  const gw = await startRestartableGateway(t);
  const c = client(t, gw.busUrl, { id: 'tts', reconnect: { initialDelayMs: 50, maxDelayMs: 500 } });
  const seen: unknown[] = [];
  const disconnects: number[] = [];
  let reconnects = 0;
  c.on('disconnected', ({ code }) => disconnects.push(code));
  const clientIds: (string | null)[] = [];
  c.on('connected', ({ reconnected, clientId }) => {
    clientIds.push(clientId);
    if (reconnected) reconnects++;
  });
  await c.connect();
  await c.subscribe('agent.reply', (event) => { seen.push(event.payload); });
  await c.publish('agent.reply', 'before');
  await until(() => seen.length === 1);

  await gw.stop();
  await until(() => disconnects.length === 1);
  t.same(disconnects, [1001], 'the gateway said it was going away');
  const waited = c.publish('agent.reply', 'while down');
  t.equal(c.bufferedFrames, 1);
  await gw.start();
  t.same(await waited, { delivered: 1 }, 'restored its subscription before sending what waited');
  await until(() => seen.length === 2);
  t.equal(reconnects, 1);
  t.equal(clientIds.length, 2);
  t.ok(clientIds.every((id) => /^[0-9a-f-]{36}$/.test(id ?? '')), 'each connection announced with the id its welcome gave');
  t.not(clientIds[0], clientIds[1]);
  t.equal(c.clientId, clientIds[1]);

  const other = client(t, gw.busUrl);
  await other.connect();
  await other.publish('agent.reply', 'after');
  await until(() => seen.length === 3);
  t.same(seen, ['before', 'while down', 'after']);
  t.equal(gw.app?.bus.router.subscriptionCounts()['agent.reply'], 1, 'one subscription at the new gateway, not two');
});

t.test('a gateway that stops answering is dropped by the keepalive and reconnected', async (t) => {
  const port = await freePort();
  const wss = new WebSocketServer({ port, host: '127.0.0.1' });
  t.teardown(() => closeServer(wss));
  let connections = 0;
  // A peer that accepts and then says nothing, as a hung gateway would.
  wss.on('connection', () => { connections++; });
  // Silent for 2 × 600 ms: dropped. (Without a welcome frame it counts as connected after 1 s.)
  const c = client(t, `ws://127.0.0.1:${port}/bus`, { keepaliveMs: 600, reconnect: { initialDelayMs: 20, maxDelayMs: 50 } });
  const reasons: string[] = [];
  c.on('disconnected', ({ reason }) => reasons.push(reason));
  const started = Date.now();
  await c.connect();
  t.ok(Date.now() - started >= 900, 'a server with no welcome frame still counts as connected, after a while');
  t.equal(c.clientId, null);
  await until(() => connections >= 2, 5000);
  t.match(reasons[0], /stopped answering/);
});

t.test('close rejects what waits and stops reconnecting', async (t) => {
  const port = await freePort();
  const c = new BrokerClient({ url: `ws://127.0.0.1:${port}/bus` });
  const pending = c.publish('a.b', 1);
  const connecting = c.connect({ retry: true });
  let closed = false;
  c.on('closed', () => { closed = true; });
  await c.close();
  t.equal((await rejection(pending)).code, 'CLOSED');
  t.equal((await rejection(connecting)).code, 'CLOSED');
  t.equal((await rejection(c.connect())).code, 'CLOSED');
  t.ok(closed);
});
