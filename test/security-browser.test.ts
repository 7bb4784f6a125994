import t from 'tap';
import { parseEdgeConfig } from '../src/edge/edge-config.js';
import { bearer, edgeConfig, tokenSpec } from './helpers/edge.js';
import { startGateway } from './helpers/gateway.js';
import { rawRequest, upgradeStatus } from './helpers/raw-http.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket } from './helpers/test-socket.js';
import { startHttpUpstream } from './helpers/upstreams.js';

// One Redis for every gateway of this file.
const redis = await startRedis(t);

t.test('auth off: a foreign page cannot open /bus or /heartbeat; the gateway\'s own page and non-browser clients can', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url });
  const heartbeatUrl = `ws://127.0.0.1:${gw.port}/heartbeat`;
  const evil = { origin: 'http://evil.example' };
  t.equal(await upgradeStatus(gw.busUrl, evil), 403, '/bus from a foreign page');
  t.equal(await upgradeStatus(heartbeatUrl, evil), 403, '/heartbeat from a foreign page');
  t.equal(await upgradeStatus(gw.busUrl, { origin: 'null' }), 403, 'an opaque origin (sandboxed frame, file://) is foreign too');
  t.equal(await upgradeStatus(gw.busUrl, { origin: `http://127.0.0.1:${gw.port}.evil.example` }), 403, 'a look-alike name is foreign');
  t.equal(await upgradeStatus(gw.busUrl, { origin: `http://127.0.0.1:${gw.port + 1}` }), 403, 'another port on this machine is another origin');

  t.equal(await upgradeStatus(gw.busUrl, { origin: gw.httpUrl }), 101, '/bus from the gateway\'s own page');
  t.equal(await upgradeStatus(heartbeatUrl, { origin: gw.httpUrl }), 101, '/heartbeat from the gateway\'s own page');
  t.equal(await upgradeStatus(`ws://localhost:${gw.port}/bus`, { origin: `http://localhost:${gw.port}` }), 101, 'the own page by another loopback name');
  t.equal(await upgradeStatus(gw.busUrl), 101, 'a service without Origin');
  t.equal(await upgradeStatus(heartbeatUrl), 101, 'a heartbeat client without Origin');

  // What the refused page would have done: nothing of it reached the bus.
  const watcher = await TestSocket.open(gw.busUrl);
  t.teardown(() => watcher.close());
  t.equal((gw.app.bus.router.describe()).connections.length, 1, 'only the watcher is connected');

  const refused = await rawRequest(`${gw.httpUrl}/queues`, { headers: evil });
  t.equal(refused.status, 403, 'HTTP to the gateway\'s routes from a foreign page');
  t.same(JSON.parse(refused.body), { error: 'origin "http://evil.example" may not use the gateway; list it in the config\'s cors.origins to allow it', code: 'FORBIDDEN' });
  const publish = await rawRequest(`${gw.httpUrl}/bus/publish`, {
    method: 'POST', headers: { ...evil, 'content-type': 'text/plain' }, body: JSON.stringify({ type: 'x.y' }),
  });
  t.equal(publish.status, 403, 'a form-style cross-site POST is refused before it is read');
  t.equal((await rawRequest(`${gw.httpUrl}/queues`, { headers: { origin: gw.httpUrl } })).status, 200, 'same-origin fetch (the dashboard)');
});

t.test('auth off: a request naming a host that is not this machine is refused (DNS rebinding)', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url });
  const attacker = await rawRequest(`${gw.httpUrl}/queues`, { headers: { host: `attacker.example:${gw.port}` } });
  t.equal(attacker.status, 403);
  t.equal(JSON.parse(attacker.body).code, 'FORBIDDEN');
  t.equal((await rawRequest(`${gw.httpUrl}/health`, { headers: { host: 'attacker.example' } })).status, 403, 'any route');
  t.equal(await upgradeStatus(gw.busUrl, { headers: { host: `attacker.example:${gw.port}` } }), 403, 'and the WebSocket');
  t.equal(await upgradeStatus(gw.busUrl, { headers: { host: `attacker.example:${gw.port}` }, origin: `http://attacker.example:${gw.port}` }), 403,
    'a rebound page is "same origin" with itself, and still refused');
  for (const host of [`localhost:${gw.port}`, `127.0.0.1:${gw.port}`, `[::1]:${gw.port}`, 'localhost']) {
    t.equal((await rawRequest(`${gw.httpUrl}/queues`, { headers: { host } })).status, 200, `Host: ${host}`);
  }
});

t.test('a LAN dashboard: its name in hosts, another page\'s origin in cors.origins', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url, edge: edgeConfig({ hosts: ['brainstem.lan'], corsOrigins: ['http://tools.lan:5173'] }) });
  const lan = { host: `brainstem.lan:${gw.port}`, origin: `http://brainstem.lan:${gw.port}` };
  t.equal((await rawRequest(`${gw.httpUrl}/queues`, { headers: lan })).status, 200, 'the dashboard by its LAN name');
  t.equal(await upgradeStatus(gw.busUrl, { headers: { host: lan.host }, origin: lan.origin }), 101, 'its /bus');
  t.equal(await upgradeStatus(gw.busUrl, { origin: 'http://tools.lan:5173' }), 101, 'a listed origin');
  t.equal((await rawRequest(`${gw.httpUrl}/queues`, { headers: { host: `other.lan:${gw.port}` } })).status, 403, 'an unlisted name');
});

t.test('with tokens: Origin is still checked, Host is not (a rebinding page has no token)', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url, edge: edgeConfig({ tokens: [tokenSpec('ops', 'ops-token-0123456789', { admin: true })] }) });
  t.equal((await rawRequest(`${gw.httpUrl}/queues`, { headers: { ...bearer('ops-token-0123456789'), origin: 'http://evil.example' } })).status, 403);
  t.equal(await upgradeStatus(`${gw.busUrl}?token=ops-token-0123456789`, { origin: 'http://evil.example' }), 403, 'a page that knows a token still is not allowed');
  t.equal((await rawRequest(`${gw.httpUrl}/queues`, { headers: { ...bearer('ops-token-0123456789'), host: 'brainstem.lan' } })).status, 200);
});

t.test('preflights: without a cors section the gateway answers them and nothing reaches the upstream', async (t) => {
  const upstream = await startHttpUpstream(t);
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    edge: edgeConfig({
      proxy: [{ prefix: '/up', upstream: upstream.url, websocket: false, auth: true, rewritePrefix: '' }],
      tokens: [tokenSpec('svc', 'svc-token-0123456789', { publish: ['svc.>'] })],
    }),
  });
  const preflight = (origin: string) => rawRequest(`${gw.httpUrl}/up/rpc`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'content-type': 'application/json' },
    body: JSON.stringify({ method: 'drop_all' }),
  });
  const own = await preflight(gw.httpUrl);
  t.equal(own.status, 204, 'answered by the gateway');
  t.equal(own.headers['access-control-allow-origin'], undefined, 'with no CORS headers');
  t.equal((await preflight('http://evil.example')).status, 403, 'a foreign page is refused outright');
  const plain = await rawRequest(`${gw.httpUrl}/up/rpc`, { method: 'OPTIONS' });
  t.equal(plain.status, 401, 'a plain OPTIONS needs the token like any method');
  const withToken = await rawRequest(`${gw.httpUrl}/up/rpc`, { method: 'OPTIONS', headers: bearer('svc-token-0123456789') });
  t.equal(withToken.status, 200, 'and goes upstream with it');
  t.same(upstream.seen.map((seen) => seen.method), ['OPTIONS'], 'only the authenticated OPTIONS reached the upstream');
});

t.test('only one token per request', async (t) => {
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    edge: edgeConfig({ tokens: [tokenSpec('a', 'a-token-0123456789', { admin: true }), tokenSpec('b', 'b-token-0123456789')] }),
  });
  const both = await rawRequest(`${gw.httpUrl}/queues?token=b-token-0123456789`, { headers: bearer('a-token-0123456789') });
  t.equal(both.status, 400);
  t.equal(JSON.parse(both.body).code, 'INVALID_FRAME');
  t.equal((await rawRequest(`${gw.httpUrl}/queues?token=a-token-0123456789&token=a-token-0123456789`)).status, 400, 'even the same one twice');
  t.equal(await upgradeStatus(`${gw.busUrl}?token=a-token-0123456789`, { headers: bearer('b-token-0123456789') }), 400, 'on the upgrade too');
  t.equal((await rawRequest(`${gw.httpUrl}/queues?token=a-token-0123456789`)).status, 200, 'one is fine');
});

t.test('hosts in the config file: bare names, checked at start', async (t) => {
  t.same(parseEdgeConfig('{"hosts": ["Brainstem.LAN", "192.168.1.20", "[fd00::1]"]}', 'c.json', '/tmp').hosts, ['brainstem.lan', '192.168.1.20', '[fd00::1]']);
  t.throws(() => parseEdgeConfig('{\n"hosts": [\n"brainstem.lan:8080", "http://x"]}', 'c.json', '/tmp'), {
    message: 'c.json:3: hosts[0]: expected a host name or address such as "brainstem.lan" or "192.168.1.20" (no scheme or port)\n'
      + 'c.json:3: hosts[1]: expected a host name or address such as "brainstem.lan" or "192.168.1.20" (no scheme or port)',
  });
});
