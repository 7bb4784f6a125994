import type { AddressInfo } from 'node:net';
import t from 'tap';
import WebSocket from 'ws';
import { buildApp, type BuildOptions } from '../app.js';
import { bearer, edgeConfig, tokenSpec } from './helpers/edge.js';
import { startGateway, type RunningGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;
type Teardown = { teardown(fn: () => unknown): void };

const redis = await startRedis(t);

const TOKENS = {
  tts: 'tts-token-0123456789abcdef',
  watcher: 'watcher-token-0123456789ab',
  ops: 'ops-token-0123456789abcdef',
};

const edge = edgeConfig({
  tokens: [
    tokenSpec('tts', TOKENS.tts, { publish: ['tts.>', 'heartbeat.ping'], subscribe: ['agent.reply'], queues: ['generate.audio'] }),
    tokenSpec('watcher', TOKENS.watcher, { publish: ['fs.*'], subscribe: ['agent.>'] }),
    tokenSpec('ops', TOKENS.ops, { admin: true }),
  ],
});

const gateway = (t: Teardown, options: BuildOptions = {}) => startGateway(t, { redisUrl: redis.url, edge, ...options });

/** The HTTP status a WebSocket upgrade is refused with, or 101 if it is accepted. */
function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on('upgrade', () => {
      ws.terminate();
      resolve(101);
    });
    ws.on('unexpected-response', (_request, response) => {
      resolve(response.statusCode ?? 0);
      response.destroy();
    });
    ws.on('error', (err) => {
      if (!/Unexpected server response/.test(err.message)) reject(err);
    });
  });
}

t.test('/bus: 401 without a known token, in by query or by Bearer header', async (t) => {
  const gw = await gateway(t);
  t.equal(await upgradeStatus(gw.busUrl), 401, 'no token');
  t.equal(await upgradeStatus(`${gw.busUrl}?token=wrong`), 401, 'unknown token');
  t.equal(await upgradeStatus(gw.busUrl, bearer('wrong')), 401, 'unknown bearer');
  t.equal(gw.app.bus.router.connections.size, 0, 'nothing got attached');

  const byQuery = await TestSocket.open(`${gw.busUrl}?name=tts&token=${TOKENS.tts}`);
  const byHeader = await TestSocket.open(`${gw.busUrl}?name=tts2`, { headers: bearer(TOKENS.tts) });
  t.teardown(() => { byQuery.close(); byHeader.close(); });
  t.match(await byQuery.call({ action: 'subscribe', topic: 'agent.reply' }), { ok: true }, 'in by ?token=');
  t.match(await byHeader.call({ action: 'subscribe', topic: 'agent.reply' }), { ok: true }, 'in by Authorization: Bearer');
  t.equal(gw.app.bus.router.connections.size, 2);
});

t.test('/bus: each frame is checked against the token; FORBIDDEN changes nothing', async (t) => {
  const gw = await gateway(t);
  const tts = await TestSocket.open(`${gw.busUrl}?name=tts&token=${TOKENS.tts}`);
  const watcher = await TestSocket.open(`${gw.busUrl}?name=watcher&token=${TOKENS.watcher}`);
  const ops = await TestSocket.open(`${gw.busUrl}?name=ops&token=${TOKENS.ops}`);
  t.teardown(() => { tts.close(); watcher.close(); ops.close(); });

  // subscribe: allowed only when one of the token's patterns covers the whole pattern
  t.same(await tts.call({ action: 'subscribe', topic: 'agent.reply' }, 's1'), { ok: true, id: 's1' });
  for (const topic of ['agent.*', 'agent.>', '>', 'secret.plans']) {
    t.same(await tts.call({ action: 'subscribe', topic }, `deny-${topic}`), {
      error: `not allowed to subscribe to ${topic}`, code: 'FORBIDDEN', id: `deny-${topic}`,
    }, `tts may not subscribe to ${topic}`);
  }
  for (const topic of ['agent.reply', 'agent.*.done', 'agent.>']) {
    t.match(await watcher.call({ action: 'subscribe', topic }), { ok: true }, `agent.> covers ${topic}`);
  }
  t.match(await watcher.call({ action: 'subscribe', topic: 'agent' }), { code: 'FORBIDDEN' }, 'agent.> does not cover agent itself');
  t.match(await ops.call({ action: 'subscribe', topic: '>' }), { ok: true }, 'admin may subscribe to everything');

  // publish: allowed when a pattern matches the type
  t.match(await tts.call({ action: 'publish', message: { type: 'tts.speak.done', payload: 1 } }), { ok: true });
  t.match(await tts.call({ action: 'publish', message: { type: 'heartbeat.ping', payload: 2 } }), { ok: true });
  t.same(await tts.call({ action: 'publish', message: { type: 'agent.reply', payload: 'forged' } }, 'p'), {
    error: 'not allowed to publish agent.reply', code: 'FORBIDDEN', id: 'p',
  });
  t.match(await watcher.call({ action: 'publish', message: { type: 'fs.change.deep', payload: 3 } }), { code: 'FORBIDDEN' }, 'fs.* matches one segment only');

  // Everything allowed arrived, in order; the forbidden publish reached no one.
  const seen: unknown[] = [];
  for (let i = 0; i < 2; i++) seen.push(((await ops.event()).event as Frame).type);
  t.same(seen, ['tts.speak.done', 'heartbeat.ping']);
  t.ok(await ops.nothing((f) => 'event' in f), 'the forbidden publish was not delivered');
  t.ok(await tts.nothing((f) => 'event' in f), 'the forbidden subscriptions were not made');
  t.same(gw.app.bus.router.describe().connections.find((c) => c.name === 'tts')?.subscriptions, ['agent.reply']);

  // The connection is still usable after a refusal.
  await ops.call({ action: 'publish', message: { type: 'agent.reply', payload: 'real' } });
  t.equal(((await tts.event('agent.reply')).event as Frame).payload, 'real');
});

t.test('REST: any known token reads; POST /bus/publish needs the publish right', async (t) => {
  const gw = await gateway(t);
  const state = await fetch(`${gw.httpUrl}/bus`);
  t.equal(state.status, 401);
  t.same(await state.json(), { error: 'a token is required (Authorization: Bearer or ?token=)', code: 'UNAUTHORIZED' });
  t.equal((await fetch(`${gw.httpUrl}/bus`, { headers: bearer(TOKENS.watcher) })).status, 200);
  t.equal((await fetch(`${gw.httpUrl}/bus?token=${TOKENS.watcher}`)).status, 200);

  const publish = (token: string | null, type: string) => fetch(`${gw.httpUrl}/bus/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? bearer(token) : {}) },
    body: JSON.stringify({ type, payload: null }),
  });
  t.equal((await publish(null, 'tts.speak')).status, 401);
  t.equal((await publish('nope', 'tts.speak')).status, 401);
  const forbidden = await publish(TOKENS.tts, 'agent.reply');
  t.equal(forbidden.status, 403);
  t.same(await forbidden.json(), { error: 'not allowed to publish agent.reply', code: 'FORBIDDEN' });
  t.equal((await publish(TOKENS.tts, 'tts.speak')).status, 202);
  t.equal((await publish(TOKENS.ops, 'anything.at.all')).status, 202, 'admin may publish anything');

  t.equal((await fetch(`${gw.httpUrl}/health`)).status, 200, '/health stays open for probes');
});

/**
 * A gateway where the REST routes of the other organs exist. While an organ
 * is not in the app yet, a stand-in route takes its place, so that these
 * tests exercise the real auth hook on the real path either way.
 */
async function gatewayWithOrganRoutes(t: Teardown): Promise<RunningGateway> {
  const app = await buildApp({ logger: false, redisUrl: redis.url, edge });
  const standIns = [
    { method: 'POST' as const, url: '/queues/:name/pause' },
    { method: 'POST' as const, url: '/queues/:name/tasks' },
    { method: 'GET' as const, url: '/queues' },
    { method: 'POST' as const, url: '/heartbeat' },
  ];
  for (const route of standIns) {
    if (!app.hasRoute(route)) app.route({ ...route, handler: async (_request, reply) => reply.code(200).send({ standIn: true }) });
  }
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  const { port } = app.server.address() as AddressInfo;
  return { app, port, httpUrl: `http://127.0.0.1:${port}`, busUrl: `ws://127.0.0.1:${port}/bus` };
}

t.test('REST: queue mutations need admin (403 otherwise); enqueue needs the queue right; heartbeats a token', async (t) => {
  const gw = await gatewayWithOrganRoutes(t);
  const post = (path: string, token: string | null, body: unknown = {}) => fetch(`${gw.httpUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? bearer(token) : {}) },
    body: JSON.stringify(body),
  });

  t.equal((await post('/queues/generate.audio/pause', null)).status, 401, 'no token: 401');
  const denied = await post('/queues/generate.audio/pause', TOKENS.tts);
  t.equal(denied.status, 403, 'a known token without admin: 403');
  t.same(await denied.json(), { error: 'this needs an admin token', code: 'FORBIDDEN' });
  t.notOk([401, 403].includes((await post('/queues/generate.audio/pause', TOKENS.ops)).status), 'admin passes the gate');

  t.equal((await fetch(`${gw.httpUrl}/queues`)).status, 401);
  t.notOk([401, 403].includes((await fetch(`${gw.httpUrl}/queues`, { headers: bearer(TOKENS.watcher) })).status), 'any token may read');

  const enqueueDenied = await post('/queues/generate.text/tasks', TOKENS.tts, { task: {} });
  t.equal(enqueueDenied.status, 403);
  t.same(await enqueueDenied.json(), { error: 'this token may not use queue generate.text', code: 'FORBIDDEN' });
  t.notOk([401, 403].includes((await post('/queues/generate.audio/tasks', TOKENS.tts, { task: {} })).status), 'enqueue on a queue the token names');

  t.equal((await post('/heartbeat', null, { pid: 1, name: 'x' })).status, 401, 'heartbeats need a token when auth is on');
  t.notOk([401, 403].includes((await post(`/heartbeat?token=${TOKENS.watcher}`, null, { pid: 1, name: 'x' })).status));
});

t.test('no tokens configured: everything is open, as on the original broker', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url });
  const ws = await TestSocket.open(gw.busUrl);
  t.teardown(() => ws.close());
  t.match(await ws.call({ action: 'subscribe', topic: '>' }), { ok: true });
  t.match(await ws.call({ action: 'publish', message: { type: 'any.thing' } }), { ok: true, delivered: 1 });
  t.equal((await fetch(`${gw.httpUrl}/bus`)).status, 200);
});
