import t from 'tap';
import WebSocket from 'ws';
import type { BuildOptions } from '../app.js';
import { bearer, edgeConfig, tokenSpec } from './helpers/edge.js';
import { startGateway } from './helpers/gateway.js';
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
    tokenSpec('tts', TOKENS.tts, { publish: ['tts.>', 'status.ping', 'heartbeat.ping'], subscribe: ['agent.reply'], queues: ['generate.audio'] }),
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
  t.match(await tts.call({ action: 'publish', message: { type: 'status.ping', payload: 2 } }), { ok: true });
  t.match(await tts.call({ action: 'publish', message: { type: 'heartbeat.ping', payload: 2 } }), { code: 'FORBIDDEN' }, 'the gateway\'s own topics need admin, whatever the patterns say');
  t.same(await tts.call({ action: 'publish', message: { type: 'agent.reply', payload: 'forged' } }, 'p'), {
    error: 'not allowed to publish agent.reply', code: 'FORBIDDEN', id: 'p',
  });
  t.match(await watcher.call({ action: 'publish', message: { type: 'fs.change.deep', payload: 3 } }), { code: 'FORBIDDEN' }, 'fs.* matches one segment only');

  // Everything allowed arrived, in order; the forbidden publish reached no one.
  const seen: unknown[] = [];
  for (let i = 0; i < 2; i++) seen.push(((await ops.event()).event as Frame).type);
  t.same(seen, ['tts.speak.done', 'status.ping']);
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

t.test('REST: queue mutations need admin (403 otherwise); enqueue needs the queue right; heartbeats a token', async (t) => {
  const gw = await gateway(t);
  const post = (path: string, token: string | null, body: unknown = {}) => fetch(`${gw.httpUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? bearer(token) : {}) },
    body: JSON.stringify(body),
  });

  t.equal((await post('/queues/generate.audio/pause', null)).status, 401, 'no token: 401');
  const denied = await post('/queues/generate.audio/pause', TOKENS.tts);
  t.equal(denied.status, 403, 'a known token without admin: 403');
  t.same(await denied.json(), { error: 'this needs an admin token', code: 'FORBIDDEN' });
  const paused = await post('/queues/generate.audio/pause', TOKENS.ops);
  t.equal(paused.status, 200, 'admin may pause');
  t.match(await paused.json(), { ok: true, paused: true });
  t.equal((await post('/queues/generate.audio/resume', TOKENS.ops)).status, 200);

  t.equal((await fetch(`${gw.httpUrl}/queues`)).status, 401);
  t.equal((await fetch(`${gw.httpUrl}/queues`, { headers: bearer(TOKENS.watcher) })).status, 200, 'any token may read');

  const enqueueDenied = await post('/queues/generate.text/tasks', TOKENS.tts, { task: {} });
  t.equal(enqueueDenied.status, 403);
  t.same(await enqueueDenied.json(), { error: 'not allowed to use queue generate.text', code: 'FORBIDDEN' });
  const enqueued = await post('/queues/generate.audio/tasks', TOKENS.tts, { task: { text: 'hi' } });
  t.equal(enqueued.status, 201, 'enqueue on a queue the token names');
  t.match(await enqueued.json(), { ok: true, taskId: String });

  t.equal((await post('/heartbeat', null, { pid: process.pid, name: 'edge-test' })).status, 401, 'heartbeats need a token when auth is on');
  t.equal((await post('/heartbeat/heartbeat', null, { pid: process.pid, name: 'edge-test' })).status, 401);
  t.equal((await fetch(`${gw.httpUrl}/heartbeats`)).status, 401);
  t.notOk([401, 403].includes((await post(`/heartbeat?token=${TOKENS.watcher}`, null, { pid: process.pid, name: 'edge-test' })).status), 'any known token may beat');
});

t.test('/bus: enqueue and pull are checked against the token\'s queues; FORBIDDEN stores and leases nothing', async (t) => {
  // A Redis of its own, so that the queue holds exactly what this test put in.
  const gw = await gateway(t, { redisUrl: (await startRedis(t)).url });
  const tts = await TestSocket.open(`${gw.busUrl}?name=tts&token=${TOKENS.tts}`);
  const watcher = await TestSocket.open(`${gw.busUrl}?name=watcher&token=${TOKENS.watcher}`);
  const ops = await TestSocket.open(`${gw.busUrl}?name=ops&token=${TOKENS.ops}`);
  t.teardown(() => { tts.close(); watcher.close(); ops.close(); });
  const queue = 'generate.audio';

  t.same(await watcher.call({ action: 'enqueue', queue, task: { forged: true } }, 'e1'), {
    error: `not allowed to use queue ${queue}`, code: 'FORBIDDEN', id: 'e1',
  });
  t.same(await watcher.call({ action: 'pull', queue }, 'p1'), { error: `not allowed to use queue ${queue}`, code: 'FORBIDDEN', id: 'p1' });
  t.match(await tts.call({ action: 'enqueue', queue: 'generate.text', task: 1 }), { code: 'FORBIDDEN' }, 'only the queues the token names');

  const stored = await tts.call({ action: 'enqueue', queue, task: { text: 'allowed' } });
  t.match(stored, { ok: true, taskId: String });
  tts.send({ action: 'pull', queue });
  const { task } = await tts.next((f) => 'task' in f) as { task: Frame };
  t.same(task.payload, { text: 'allowed' }, 'the only task in the queue is the allowed one');
  t.ok(await watcher.nothing((f) => 'task' in f), 'the refused pull holds no credit');
  await tts.call({ action: 'ack', taskId: task.id as string });
  t.match(await ops.call({ action: 'enqueue', queue: 'any.queue', task: 2 }), { ok: true }, 'admin may use any queue');
});

t.test('no tokens configured: everything is open, as on the original broker', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url });
  const ws = await TestSocket.open(gw.busUrl);
  t.teardown(() => ws.close());
  t.match(await ws.call({ action: 'subscribe', topic: '>' }), { ok: true });
  t.match(await ws.call({ action: 'publish', message: { type: 'any.thing' } }), { ok: true, delivered: 1 });
  t.equal((await fetch(`${gw.httpUrl}/bus`)).status, 200);
});
