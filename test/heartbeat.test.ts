import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import WebSocket from 'ws';
import { buildApp, type BrainstemApp } from '../app.js';
import { bearer, edgeConfig, tokenSpec } from './helpers/edge.js';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;
type Teardown = { teardown(fn: () => unknown): void };

/** Pids far above anything running here: beats for them are accepted, never signalled. */
const FAKE_PID = 3_999_000;

function ecosystemFile(t: Teardown, apps: object[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'brainstem-eco-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'ecosystem.config.cjs');
  writeFileSync(path, `module.exports = ${JSON.stringify({ apps })};\n`);
  return path;
}

async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Frame }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() as Frame };
}

async function getJson(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, { headers });
  return { status: res.status, body: await res.json() };
}

/** A WebSocket to /heartbeat that hands back one parsed answer per call. */
async function heartbeatSocket(url: string): Promise<{ ws: WebSocket; send(frame: unknown): Promise<Frame> }> {
  const ws = new WebSocket(url);
  await once(ws, 'open');
  const answers: Frame[] = [];
  const waiting: ((f: Frame) => void)[] = [];
  ws.on('message', (data) => {
    const frame = JSON.parse(String(data)) as Frame;
    const next = waiting.shift();
    if (next) next(frame);
    else answers.push(frame);
  });
  return {
    ws,
    send(frame) {
      ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
      const ready = answers.shift();
      return ready ? Promise.resolve(ready) : new Promise((resolve) => waiting.push(resolve));
    },
  };
}

const REPLY_KEYS = ['status', 'pid', 'name', 'cpu', 'memory', 'netRx', 'netTx'];

t.test('POST /heartbeat answers the original body; a bus subscriber to heartbeat.* sees heartbeat.ping', async (t) => {
  const gw = await startGateway(t);
  const sub = await TestSocket.open(`${gw.busUrl}?name=cephalon`);
  t.teardown(() => sub.close());
  await sub.call({ action: 'subscribe', topic: 'heartbeat.*' });

  const res = await post(`${gw.httpUrl}/heartbeat`, { pid: process.pid, name: 'tts' });
  t.equal(res.status, 200);
  t.same(Object.keys(res.body), REPLY_KEYS, 'exactly the original reply fields');
  t.match(res.body, { status: 'ok', pid: process.pid, name: 'tts' });
  t.ok((res.body.memory as number) > 1024 * 1024, 'memory is this process\'s real resident size');
  t.ok((res.body.netRx as number) > 0, 'network bytes read from /proc/PID/net/dev');

  const { event } = await sub.event('heartbeat.ping') as { event: Frame };
  t.equal(event.source, 'heartbeat');
  const payload = event.payload as Frame;
  t.match(payload, {
    pid: process.pid, name: 'tts', cpu: Number, memory: res.body.memory, netRx: Number, netTx: Number,
    last: Number, sessionId: gw.app.heartbeat.monitor.sessionId, local: true, startTime: /^\d+$/,
  });
  t.ok(Number.isInteger(payload.uptime) && (payload.uptime as number) >= Math.floor(process.uptime()) - 1,
    'uptime is how long the process has run, in seconds');

  const list = await getJson(`${gw.httpUrl}/heartbeats`);
  t.equal(list.status, 200);
  t.match(list.body, [{ pid: process.pid, name: 'tts', status: 'alive', sessionId: gw.app.heartbeat.monitor.sessionId }]);
});

t.test("POST /heartbeat/heartbeat, where the user's HeartbeatClient posts, is the same beat", async (t) => {
  const gw = await startGateway(t);
  const res = await post(`${gw.httpUrl}/heartbeat/heartbeat`, { pid: String(process.pid), name: 'stt' });
  t.equal(res.status, 200);
  t.same(Object.keys(res.body), REPLY_KEYS);
  t.equal(res.body.pid, process.pid, 'a pid given as digits is stored as a number, as parseInt did');
  const list = await getJson(`${gw.httpUrl}/heartbeats`);
  t.match(list.body, [{ pid: process.pid, name: 'stt', status: 'alive' }]);
});

t.test('a missing or malformed pid or name answers 400 and stores nothing', async (t) => {
  const gw = await startGateway(t);
  const bad: unknown[] = [
    {}, { pid: FAKE_PID }, { name: 'tts' }, { pid: 'abc', name: 'tts' }, { pid: true, name: 'tts' },
    { pid: -5, name: 'tts' }, { pid: 0, name: 'tts' }, { pid: 1.5, name: 'tts' }, { pid: FAKE_PID, name: '' },
    { pid: FAKE_PID, name: 5 }, { pid: FAKE_PID, name: 'x'.repeat(201) }, [], 'null',
  ];
  for (const body of bad) {
    const res = await post(`${gw.httpUrl}/heartbeat`, body);
    t.equal(res.status, 400, `400 for ${JSON.stringify(body)}`);
    t.same(res.body, { error: 'pid and name required', code: 'INVALID_FRAME' });
  }
  const broken = await post(`${gw.httpUrl}/heartbeat`, '{"pid":');
  t.equal(broken.status, 400);
  t.equal(broken.body.code, 'INVALID_JSON');
  t.same((await getJson(`${gw.httpUrl}/heartbeats`)).body, []);
});

/** A beat from another machine (its pid cannot be proven here, so it counts toward its name's limit). */
async function remoteBeat(app: BrainstemApp, pid: number, name: string): Promise<{ status: number; body: Frame }> {
  const res = await app.inject({ method: 'POST', url: '/heartbeat', payload: { pid, name }, remoteAddress: '192.168.1.20' });
  return { status: res.statusCode, body: res.json() as Frame };
}

t.test('instance limits from the PM2 ecosystem file answer 409 while the instances are live', async (t) => {
  const ecosystem = ecosystemFile(t, [{ name: 'tts', instances: 1 }, { name: 'stt', instances: 2 }, { name: 'llm' }]);
  const gw = await startGateway(t, { ecosystemConfig: ecosystem, heartbeatTimeoutMs: 2000, heartbeatCheckIntervalMs: 60_000 });
  t.same(Object.fromEntries(gw.app.heartbeat.limits.limits), { tts: 1, stt: 2, llm: 1 }, 'instances missing means 1');
  const beat = (pid: number, name: string) => remoteBeat(gw.app, pid, name);

  t.equal((await beat(FAKE_PID + 1, 'tts')).status, 200);
  const refused = await beat(FAKE_PID + 2, 'tts');
  t.equal(refused.status, 409);
  t.same(refused.body, { error: 'instance limit exceeded for tts', code: 'INSTANCE_LIMIT' });
  t.equal((await beat(FAKE_PID + 1, 'tts')).status, 200, 'the live instance keeps beating');
  t.equal((await beat(FAKE_PID + 3, 'stt')).status, 200);
  t.equal((await beat(FAKE_PID + 4, 'stt')).status, 200);
  t.equal((await beat(FAKE_PID + 5, 'stt')).status, 409);
  t.equal((await beat(FAKE_PID + 6, 'llm')).status, 200);
  t.equal((await beat(FAKE_PID + 7, 'llm')).status, 409);
  for (let i = 10; i < 15; i++) t.equal((await beat(FAKE_PID + i, 'misc')).status, 200, 'names not in the file are unlimited');

  await new Promise((r) => setTimeout(r, 2100));
  t.equal((await beat(FAKE_PID + 2, 'tts')).status, 200, 'once the old instance is stale, a new one may start');
});

t.test('concurrent first beats of a limited name: exactly the limit is admitted', async (t) => {
  const ecosystem = ecosystemFile(t, [{ name: 'tts', instances: 2 }]);
  const gw = await startGateway(t, { ecosystemConfig: ecosystem });
  const results = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => remoteBeat(gw.app, FAKE_PID + i, 'tts')));
  const statuses = results.map((r) => r.status).sort();
  t.same(statuses, [200, 200, 409, 409, 409, 409]);
});

t.test("a local beat naming a pid its sender does not hold cannot squat its name's instance limit", async (t) => {
  const ecosystem = ecosystemFile(t, [{ name: 'tts', instances: 1 }]);
  const gw = await startGateway(t, { ecosystemConfig: ecosystem });
  t.equal((await post(`${gw.httpUrl}/heartbeat`, { pid: FAKE_PID, name: 'tts' })).status, 200, 'accepted, but unproven');
  t.equal((await post(`${gw.httpUrl}/heartbeat`, { pid: process.pid, name: 'tts' })).status, 200,
    'the real tts (this process, beating for itself) still gets its one instance');
  t.equal((await post(`${gw.httpUrl}/heartbeat`, { pid: FAKE_PID + 1, name: 'tts' })).status, 409, 'which is now taken');
  const records = (await getJson(`${gw.httpUrl}/heartbeats`)).body as Frame[];
  t.match(records.find((r) => r.pid === process.pid), { proven: true });
  t.match(records.find((r) => r.pid === FAKE_PID), { proven: false, cpu: 0, memory: 0 });
});

t.test('the WebSocket /heartbeat answers each frame with the POST body, in order', async (t) => {
  const gw = await startGateway(t);
  const hb = await heartbeatSocket(`ws://127.0.0.1:${gw.port}/heartbeat`);
  t.teardown(() => hb.ws.terminate());
  const sub = await TestSocket.open(gw.busUrl);
  t.teardown(() => sub.close());
  await sub.call({ action: 'subscribe', topic: 'heartbeat.ping' });

  const ok = await hb.send({ pid: process.pid, name: 'discord' });
  t.same(Object.keys(ok), REPLY_KEYS);
  t.match(ok, { status: 'ok', pid: process.pid, name: 'discord' });
  t.match((await sub.event('heartbeat.ping')).event, { payload: { pid: process.pid, name: 'discord', local: true, proven: true } },
    'this process holds the WebSocket: its pid is proven');
  t.ok((ok.memory as number) > 0, 'and its figures are read');

  t.same(await hb.send('not json'), { error: 'invalid json', code: 'INVALID_JSON' });
  t.same(await hb.send({ name: 'discord' }), { error: 'pid and name required', code: 'INVALID_FRAME' });
  t.same(await hb.send('[1,2]'), { error: 'pid and name required', code: 'INVALID_FRAME' });

  // Frames sent at once are answered in the order they came, though the
  // bad one needs no store round trip.
  const [first, second, third] = await Promise.all([
    hb.send({ pid: FAKE_PID + 1, name: 'a' }), hb.send('{'), hb.send({ pid: FAKE_PID + 2, name: 'b' }),
  ]);
  t.match(first, { status: 'ok', pid: FAKE_PID + 1 });
  t.match(second, { error: 'invalid json' });
  t.match(third, { status: 'ok', pid: FAKE_PID + 2 });
  t.match((await sub.event('heartbeat.ping')).event, { payload: { pid: FAKE_PID + 1, proven: false } },
    'a pid the socket does not belong to is not proven, on the same WebSocket');

  const res = await fetch(`${gw.httpUrl}/heartbeat`);
  t.equal(res.status, 426, 'a plain GET is told to upgrade');
  t.equal(((await res.json()) as Frame).code, 'UPGRADE_REQUIRED');
});

t.test('heartbeat.warn is published when a service crosses a threshold, once per crossing', async (t) => {
  const gw = await startGateway(t, { heartbeatWarnMemoryMb: 1, heartbeatWarnCpu: 0 });
  const sub = await TestSocket.open(gw.busUrl);
  t.teardown(() => sub.close());
  await sub.call({ action: 'subscribe', topic: 'heartbeat.warn' });
  for (let i = 0; i < 3; i++) t.equal((await post(`${gw.httpUrl}/heartbeat`, { pid: process.pid, name: 'llm' })).status, 200);
  const { event } = await sub.event('heartbeat.warn') as { event: Frame };
  t.equal(event.source, 'heartbeat');
  t.match(event.payload, { pid: process.pid, name: 'llm', metric: 'memory', threshold: 1024 * 1024, memory: Number, cpu: Number });
  t.ok(((event.payload as Frame).value as number) > 1024 * 1024);
  t.ok(await sub.nothing((f) => 'event' in f), 'three beats over the threshold: one warning; cpu 0 means never');
});

t.test('503 when the store is down, and beats are accepted again when it is back', async (t) => {
  const redis = await startRedis(t);
  const gw = await startGateway(t, { redisUrl: redis.url });
  t.equal((await post(`${gw.httpUrl}/heartbeat`, { pid: process.pid, name: 'tts' })).status, 200);

  await redis.stop();
  await until(() => !gw.app.redis.isReady());
  const down = await post(`${gw.httpUrl}/heartbeat`, { pid: process.pid, name: 'tts' });
  t.equal(down.status, 503);
  t.same(down.body, { error: 'db not available', code: 'UNAVAILABLE' });
  const list = await getJson(`${gw.httpUrl}/heartbeats`);
  t.equal(list.status, 503);
  const hb = await heartbeatSocket(`ws://127.0.0.1:${gw.port}/heartbeat`);
  t.teardown(() => hb.ws.terminate());
  t.same(await hb.send({ pid: process.pid, name: 'tts' }), { error: 'db not available', code: 'UNAVAILABLE' });
  const health = await getJson(`${gw.httpUrl}/health`);
  t.match(health.body, { dependencies: { heartbeats: { ok: false, required: false } } });

  await redis.restart();
  await until(() => gw.app.redis.isReady(), 10_000);
  t.equal((await post(`${gw.httpUrl}/heartbeat`, { pid: process.pid, name: 'tts' })).status, 200);
  t.match((await getJson(`${gw.httpUrl}/heartbeats`)).body, [{ pid: process.pid, name: 'tts', status: 'alive' }],
    'the record written before the outage is still there');
});

t.test('records survive a gateway restart; closing marks the session\'s records stopped', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'brainstem-hb-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const first = await buildApp({ logger: false, dataDir });
  const firstSession = first.heartbeat.monitor.sessionId;
  const beat = await first.inject({ method: 'POST', url: '/heartbeat', payload: { pid: process.pid, name: 'tts' } });
  t.equal(beat.statusCode, 200);
  t.match(beat.json(), { status: 'ok' });
  const alive = (await first.inject({ method: 'GET', url: '/heartbeats' })).json();
  t.match(alive, [{ pid: process.pid, status: 'alive' }]);
  t.notOk('killedAt' in alive[0]);
  const closedAt = Date.now();
  await first.close();

  const gw = await startGateway(t, { dataDir });
  t.not(gw.app.heartbeat.monitor.sessionId, firstSession, 'a session id per boot');
  const [record] = (await getJson(`${gw.httpUrl}/heartbeats`)).body as Frame[];
  t.match(record, { pid: process.pid, name: 'tts', sessionId: firstSession, status: 'stopped' });
  t.ok((record?.killedAt as number) >= closedAt - 50, 'killedAt set when the first gateway closed');

  t.equal((await post(`${gw.httpUrl}/heartbeat`, { pid: process.pid, name: 'tts' })).status, 200);
  const [again] = (await getJson(`${gw.httpUrl}/heartbeats`)).body as Frame[];
  t.match(again, { status: 'alive', sessionId: gw.app.heartbeat.monitor.sessionId });
  t.notOk('killedAt' in (again as Frame), 'a new beat clears killedAt, as the original did');
});

t.test('with tokens configured, the heartbeat routes need a token', async (t) => {
  const TOKEN = 'tts-heartbeat-token-0123456789';
  const gw = await startGateway(t, { edge: edgeConfig({ tokens: [tokenSpec('tts', TOKEN)] }) });
  const anonymous = await post(`${gw.httpUrl}/heartbeat/heartbeat`, { pid: process.pid, name: 'tts' });
  t.equal(anonymous.status, 401);
  t.equal(anonymous.body.code, 'UNAUTHORIZED');
  t.equal((await post(`${gw.httpUrl}/heartbeat`, { pid: process.pid, name: 'tts' }, bearer('wrong'))).status, 401);
  t.equal((await post(`${gw.httpUrl}/heartbeat/heartbeat`, { pid: process.pid, name: 'tts' }, bearer(TOKEN))).status, 200);
  t.equal((await getJson(`${gw.httpUrl}/heartbeats`)).status, 401);
  t.equal((await getJson(`${gw.httpUrl}/heartbeats`, bearer(TOKEN))).status, 200);

  const refused = new WebSocket(`ws://127.0.0.1:${gw.port}/heartbeat`);
  refused.on('error', () => {});
  const [, response] = await once(refused, 'unexpected-response') as [unknown, { statusCode: number; destroy(): void }];
  t.equal(response.statusCode, 401, 'the WebSocket upgrade is refused without a token');
  response.destroy();
  const hb = await heartbeatSocket(`ws://127.0.0.1:${gw.port}/heartbeat?token=${TOKEN}`);
  t.teardown(() => hb.ws.terminate());
  t.match(await hb.send({ pid: process.pid, name: 'tts' }), { status: 'ok' });
});
