import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import t from 'tap';
import WebSocket from 'ws';
import { bearer, edgeConfig, tokenSpec } from './helpers/edge.js';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket } from './helpers/test-socket.js';
import { deadUpstreamUrl, startHttpUpstream, startWsEchoUpstream, type SeenRequest } from './helpers/upstreams.js';

// One Redis for every gateway of this file: the edge does not use it.
const redis = await startRedis(t);

function tempDir(t: { teardown(fn: () => unknown): void }, files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'brainstem-pages-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Opens a WebSocket and resolves with its first message, or rejects with the refusal status. */
function wsFirstMessage(url: string, send: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on('open', () => ws.send(send));
    ws.on('message', (data) => {
      resolve(data.toString());
      ws.terminate();
    });
    ws.on('unexpected-response', (_request, response) => reject(new Error(`refused with ${response.statusCode}`)));
    ws.on('error', reject);
  });
}

t.test('prefix and rewritePrefix: the upstream gets its own path, query, method and body', async (t) => {
  const upstream = await startHttpUpstream(t);
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    edge: edgeConfig({
      proxy: [
        { prefix: '/llm', upstream: upstream.url, websocket: false, auth: true, rewritePrefix: '' },
        { prefix: '/tts', upstream: upstream.url, websocket: false, auth: true, rewritePrefix: '/v1' },
      ],
    }),
  });

  const stripped = await fetch(`${gw.httpUrl}/llm/chat/completions?model=small&n=2`);
  t.equal(stripped.status, 200);
  t.equal(stripped.headers.get('x-upstream'), 'echo', 'upstream headers come back');
  t.equal(((await stripped.json()) as SeenRequest).url, '/chat/completions?model=small&n=2', 'rewritePrefix "" strips the prefix');

  const rewritten = await fetch(`${gw.httpUrl}/tts/speak`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text: 'hello' }),
  });
  const seen = (await rewritten.json()) as SeenRequest;
  t.equal(seen.url, '/v1/speak', 'the prefix is replaced by rewritePrefix');
  t.equal(seen.method, 'POST');
  t.same(JSON.parse(seen.body), { text: 'hello' }, 'the body passes through untouched');

  const outside = await fetch(`${gw.httpUrl}/ttsx/speak`);
  t.equal(outside.status, 404, 'a path that only starts with the prefix text is not proxied');
  t.equal(upstream.seen.length, 2);
});

t.test('WebSocket proxying, side by side with /bus on the same gateway', async (t) => {
  const echo = await startWsEchoUpstream(t);
  const warnings: string[] = [];
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    logger: { level: 'warn', stream: new Writable({ write(line: Buffer, _encoding, done) { warnings.push(line.toString()); done(); } }) },
    edge: edgeConfig({ proxy: [{ prefix: '/voice', upstream: echo.url, websocket: true, auth: true, rewritePrefix: '' }] }),
  });
  const proxied = `ws://127.0.0.1:${gw.port}/voice/stream?room=a`;

  t.equal(await wsFirstMessage(proxied, 'hi'), 'echo:hi');
  t.same(echo.connections, ['/stream?room=a'], 'the upstream sees the rewritten path and the query');

  // The order of registration matters (proxy before @fastify/websocket): the
  // wrong one crashes the process on the first proxied upgrade. Use both
  // kinds of upgrade, interleaved, while both stay open.
  const bus = await TestSocket.open(gw.busUrl);
  t.teardown(() => bus.close());
  const held = new WebSocket(proxied);
  t.teardown(() => held.terminate());
  await once(held, 'open');
  await bus.call({ action: 'subscribe', topic: 'edge.check' });
  held.send('again');
  const [reply] = await once(held, 'message');
  t.equal(String(reply), 'echo:again');
  await bus.call({ action: 'publish', message: { type: 'edge.check', payload: 1 } });
  t.equal(((await bus.event('edge.check')).event as { payload: number }).payload, 1, '/bus still works');
  t.equal(await wsFirstMessage(proxied, 'third'), 'echo:third', 'a proxied upgrade after the bus one works too');
  t.same(warnings, [], 'no upgrade is claimed twice (no ERR_HTTP_SOCKET_ASSIGNED warnings)');
});

t.test('an upstream that is down answers 502 with a JSON body, at once', async (t) => {
  const dead = await deadUpstreamUrl();
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    edge: edgeConfig({ proxy: [{ prefix: '/stt', upstream: dead, websocket: true, auth: true, rewritePrefix: '' }] }),
  });
  for (const method of ['GET', 'POST']) {
    const started = Date.now();
    const response = await fetch(`${gw.httpUrl}/stt/transcribe`, { method, ...(method === 'POST' ? { body: '{}', headers: { 'content-type': 'application/json' } } : {}) });
    t.equal(response.status, 502, `${method} answers 502`);
    t.match(response.headers.get('content-type'), /application\/json/);
    t.same(await response.json(), { error: 'the service behind /stt is unavailable', code: 'BAD_GATEWAY' });
    t.ok(Date.now() - started < 2000, `${method} did not hang (${Date.now() - started} ms)`);
  }

  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/stt/stream`);
  ws.on('error', () => {});
  const [code] = await once(ws, 'close');
  t.equal(code, 1011, 'a proxied WebSocket to a dead upstream is closed with 1011 (internal error)');
  const health = await fetch(`${gw.httpUrl}/health`);
  t.equal(health.status, 200, 'the gateway itself is fine');
});

t.test('auth on a proxied route: checked before the upstream sees anything; the gateway token is not passed on', async (t) => {
  const upstream = await startHttpUpstream(t);
  const echo = await startWsEchoUpstream(t);
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    edge: edgeConfig({
      tokens: [tokenSpec('ui', 'ui-token-0123456789')],
      proxy: [
        { prefix: '/llm', upstream: upstream.url, websocket: false, auth: true, rewritePrefix: '' },
        { prefix: '/public', upstream: upstream.url, websocket: false, auth: false, rewritePrefix: '' },
        { prefix: '/voice', upstream: echo.url, websocket: true, auth: true, rewritePrefix: '' },
      ],
    }),
  });

  const missing = await fetch(`${gw.httpUrl}/llm/chat`);
  t.equal(missing.status, 401);
  t.equal(missing.headers.get('www-authenticate'), 'Bearer');
  t.same(await missing.json(), { error: 'a token is required (Authorization: Bearer or ?token=)', code: 'UNAUTHORIZED' });
  const unknown = await fetch(`${gw.httpUrl}/llm/chat`, { headers: bearer('not-a-token') });
  t.equal(unknown.status, 401);
  t.equal(((await unknown.json()) as { error: string }).error, 'unknown token');
  t.equal(upstream.seen.length, 0, 'refused requests never reach the upstream');

  const withHeader = await fetch(`${gw.httpUrl}/llm/chat`, { headers: { ...bearer('ui-token-0123456789'), 'x-trace': 't1' } });
  t.equal(withHeader.status, 200);
  const seenHeader = (await withHeader.json()) as SeenRequest;
  t.notOk('authorization' in seenHeader.headers, 'the gateway token is taken off before the upstream');
  t.equal(seenHeader.headers['x-trace'], 't1', 'other headers pass');

  const withQuery = await fetch(`${gw.httpUrl}/llm/chat?token=ui-token-0123456789&q=1`);
  t.equal(withQuery.status, 200);
  t.equal(((await withQuery.json()) as SeenRequest).url, '/chat?q=1', 'the token parameter is taken off the query');

  const upstreamOwn = await fetch(`${gw.httpUrl}/public/x`, { headers: bearer('upstream-own-key') });
  t.equal(upstreamOwn.status, 200, 'a route with auth:false needs no token');
  t.equal(((await upstreamOwn.json()) as SeenRequest).headers.authorization, 'Bearer upstream-own-key', 'and a credential that is not the gateway\'s passes through');

  await t.rejects(wsFirstMessage(`ws://127.0.0.1:${gw.port}/voice/stream`, 'x'), /refused with 401/, 'a WebSocket upgrade without a token is refused');
  t.same(echo.connections, [], 'the WebSocket upstream saw nothing');
  t.equal(await wsFirstMessage(`ws://127.0.0.1:${gw.port}/voice/stream?token=ui-token-0123456789&room=b`, 'ok'), 'echo:ok');
  t.same(echo.connections, ['/stream?room=b'], 'the upstream WebSocket did not get the token');
});

t.test('frontends: static folders under a prefix and the dashboard at /, with security headers', async (t) => {
  const upstream = await startHttpUpstream(t);
  const overlay = tempDir(t, { 'index.html': '<h1>overlay</h1>', 'app.js': 'console.log(1)' });
  const inline = tempDir(t, { 'index.html': '<script>1</script>' });
  const dashboard = tempDir(t, { 'index.html': '<h1>dashboard</h1>' });
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    dashboardDir: dashboard,
    edge: edgeConfig({
      static: [{ prefix: '/overlay', root: overlay, csp: true }, { prefix: '/chat', root: inline, csp: false }],
      proxy: [{ prefix: '/llm', upstream: upstream.url, websocket: false, auth: true, rewritePrefix: '' }],
    }),
  });

  const page = await fetch(`${gw.httpUrl}/overlay/`);
  t.equal(page.status, 200);
  t.equal(await page.text(), '<h1>overlay</h1>');
  const csp = page.headers.get('content-security-policy') ?? '';
  t.match(csp, /default-src 'self'/, 'pages get a Content-Security-Policy');
  t.notMatch(csp, /upgrade-insecure-requests/, 'that does not force https on a LAN');
  t.equal(page.headers.get('x-content-type-options'), 'nosniff');
  t.equal(page.headers.get('x-frame-options'), 'SAMEORIGIN');
  t.equal(page.headers.get('strict-transport-security'), null, 'no HSTS on plain http');

  const script = await fetch(`${gw.httpUrl}/overlay/app.js`);
  t.equal(await script.text(), 'console.log(1)');
  const bare = await fetch(`${gw.httpUrl}/overlay`, { redirect: 'manual' });
  t.equal(bare.status, 301);
  t.equal(bare.headers.get('location'), '/overlay/');
  t.equal((await fetch(`${gw.httpUrl}/overlay/missing.js`)).status, 404);

  const noCsp = await fetch(`${gw.httpUrl}/chat/`);
  t.equal(noCsp.headers.get('content-security-policy'), null, 'csp:false leaves it out for pages with inline scripts');
  t.equal(noCsp.headers.get('x-content-type-options'), 'nosniff', 'but keeps the other headers');

  const root = await fetch(`${gw.httpUrl}/`);
  t.equal(await root.text(), '<h1>dashboard</h1>', 'the dashboard folder is served at /');
  t.match(root.headers.get('content-security-policy'), /default-src 'self'/);

  const proxied = await fetch(`${gw.httpUrl}/llm/x`);
  t.equal(proxied.status, 200);
  t.equal(proxied.headers.get('content-security-policy'), null, 'proxied services keep their own headers');
  const api = await fetch(`${gw.httpUrl}/health`);
  t.equal(api.headers.get('content-security-policy'), null, 'API routes are not pages');
});

t.test('CORS answers configured origins only; a preflight needs no token', async (t) => {
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    edge: edgeConfig({ corsOrigins: ['http://localhost:5173'], tokens: [tokenSpec('ui', 'ui-token-0123456789', { publish: ['ui.>'] })] }),
  });
  const allowed = await fetch(`${gw.httpUrl}/health`, { headers: { origin: 'http://localhost:5173' } });
  t.equal(allowed.headers.get('access-control-allow-origin'), 'http://localhost:5173');
  const other = await fetch(`${gw.httpUrl}/health`, { headers: { origin: 'http://evil.example' } });
  t.equal(other.headers.get('access-control-allow-origin'), null);

  const preflight = await fetch(`${gw.httpUrl}/bus/publish`, {
    method: 'OPTIONS',
    headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
  });
  t.equal(preflight.status, 204);
  t.equal(preflight.headers.get('access-control-allow-origin'), 'http://localhost:5173');
  t.match(preflight.headers.get('access-control-allow-headers'), /Authorization/);

  const publish = await fetch(`${gw.httpUrl}/bus/publish`, {
    method: 'POST',
    headers: { origin: 'http://localhost:5173', 'content-type': 'application/json', ...bearer('ui-token-0123456789') },
    body: JSON.stringify({ type: 'ui.click', payload: 1 }),
  });
  t.equal(publish.status, 202);
  t.equal(publish.headers.get('access-control-allow-origin'), 'http://localhost:5173');
});

t.test('HTTP rate limit: RATE_LIMITED over the limit; loopback exempt unless asked', async (t) => {
  const limited = await startGateway(t, { redisUrl: redis.url, httpRateLimitPerMinute: 5, httpRateLimitLoopback: true });
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push((await fetch(`${limited.httpUrl}/health`)).status);
  t.same(statuses, [200, 200, 200, 200, 200, 429]);
  const refused = await fetch(`${limited.httpUrl}/health`);
  t.equal(refused.status, 429);
  t.ok(Number(refused.headers.get('retry-after')) > 0, 'says when to retry');
  t.same(Object.keys((await refused.json()) as object), ['error', 'code']);
  await t.rejects(TestSocket.open(limited.busUrl), /429/, 'WebSocket upgrades count too');

  const exempt = await startGateway(t, { redisUrl: redis.url, httpRateLimitPerMinute: 5 });
  const codes = new Set<number>();
  for (let i = 0; i < 30; i++) codes.add((await fetch(`${exempt.httpUrl}/health`)).status);
  t.same([...codes], [200], 'loopback clients are not throttled by default');
});
