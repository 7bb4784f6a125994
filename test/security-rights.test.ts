import t from 'tap';
import { bearer, edgeConfig, tokenSpec } from './helpers/edge.js';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket } from './helpers/test-socket.js';

const redis = await startRedis(t);
const SVC = 'svc-token-0123456789';
const OPS = 'ops-token-0123456789';

async function publishOverHttp(httpUrl: string, token: string, message: object): Promise<{ status: number; body: { code?: string; error?: string } }> {
  const response = await fetch(`${httpUrl}/bus/publish`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...bearer(token) }, body: JSON.stringify(message),
  });
  return { status: response.status, body: await response.json() as { code?: string } };
}

t.test('the gateway\'s own topics: only the gateway or an admin token publishes there', async (t) => {
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    edge: edgeConfig({
      tokens: [
        // A token allowed to publish anything it likes, except what is the gateway's.
        tokenSpec('svc', SVC, { publish: ['>'], subscribe: ['>'] }),
        tokenSpec('ops', OPS, { admin: true }),
      ],
    }),
  });
  const watcher = await TestSocket.open(`${gw.busUrl}?token=${OPS}`);
  const svc = await TestSocket.open(`${gw.busUrl}?token=${SVC}`);
  t.teardown(() => {
    watcher.close();
    svc.close();
  });
  t.match(await watcher.call({ action: 'subscribe', topic: '>' }), { ok: true });

  for (const type of ['heartbeat.down', 'queue.completed', 'service.up', 'heartbeat']) {
    const refused = await svc.call({ action: 'publish', message: { type, source: 'heartbeat', payload: { pid: 1 } } });
    t.match(refused, { code: 'FORBIDDEN', error: new RegExp(`only the gateway or an admin token publishes on ${type.split('.')[0]}\\.\\*`) }, `${type} over the bus`);
    const overHttp = await publishOverHttp(gw.httpUrl, SVC, { type });
    t.equal(overHttp.status, 403, `${type} over HTTP`);
    t.equal(overHttp.body.code, 'FORBIDDEN');
  }
  t.match(await svc.call({ action: 'publish', message: { type: 'heartbeats.fine' } }), { ok: true }, 'a topic that merely starts alike is not the gateway\'s');
  // Barrier: the first event the watcher sees is the one published after the refused ones.
  t.match(await watcher.event(), { event: { type: 'heartbeats.fine', token: 'svc' } }, 'none of the refused publishes reached a subscriber');

  t.match(await watcher.call({ action: 'publish', message: { type: 'heartbeat.down', payload: { pid: 1 } } }), { ok: true }, 'an admin token may');
  t.match(await watcher.event('heartbeat.down'), { event: { token: 'ops' } });
});

t.test('with tokens on, every event says which token published it, whatever the client claims', async (t) => {
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    edge: edgeConfig({ tokens: [tokenSpec('svc', SVC, { publish: ['svc.>'], subscribe: ['svc.>'] }), tokenSpec('ops', OPS, { admin: true })] }),
  });
  const watcher = await TestSocket.open(`${gw.busUrl}?token=${OPS}`);
  const svc = await TestSocket.open(`${gw.busUrl}?name=svc-worker&token=${SVC}`);
  t.teardown(() => {
    watcher.close();
    svc.close();
  });
  t.match(await watcher.call({ action: 'subscribe', topic: 'svc.>' }), { ok: true });
  await svc.call({ action: 'publish', message: { type: 'svc.claim', source: 'ops', token: 'ops', payload: 1 } });
  const claimed = (await watcher.event('svc.claim')).event as Record<string, unknown>;
  t.equal(claimed.token, 'svc', 'the gateway overwrote the token the client claimed');
  t.equal(claimed.source, 'ops', 'source stays what the client says: token is what to trust');
  t.equal((await publishOverHttp(gw.httpUrl, SVC, { type: 'svc.http', token: 'ops' })).status, 202);
  t.match(await watcher.event('svc.http'), { event: { token: 'svc', source: 'svc' } }, 'over HTTP too');
});

t.test('auth off: events carry no token, and a client cannot add one', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url });
  const watcher = await TestSocket.open(gw.busUrl);
  t.teardown(() => watcher.close());
  await watcher.call({ action: 'subscribe', topic: 'a.>' });
  await watcher.call({ action: 'publish', message: { type: 'a.b', token: 'ops' } });
  const event = (await watcher.event('a.b')).event as Record<string, unknown>;
  t.notOk('token' in event);
});
