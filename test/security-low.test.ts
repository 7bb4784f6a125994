import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError } from '../src/config.js';
import { nestsDeeperThan, valueNestsDeeperThan } from '../src/bus/json-depth.js';
import { parseEdgeConfig } from '../src/edge/edge-config.js';
import { edgeConfig } from './helpers/edge.js';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket } from './helpers/test-socket.js';

const redis = await startRedis(t);

t.test('static folders never serve dotfiles', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'brainstem-site-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  writeFileSync(join(root, 'index.html'), '<p>site</p>');
  writeFileSync(join(root, '.env'), 'SECRET=1');
  mkdirSync(join(root, '.git'));
  writeFileSync(join(root, '.git', 'config'), '[core]');
  const gw = await startGateway(t, { redisUrl: redis.url, edge: edgeConfig({ static: [{ prefix: '/site', root, csp: true }] }) });
  t.equal((await fetch(`${gw.httpUrl}/site/index.html`)).status, 200);
  for (const path of ['/site/.env', '/site/.git/config', '/site/%2eenv']) {
    const response = await fetch(`${gw.httpUrl}${path}`);
    t.equal(response.status, 404, path);
    t.notMatch(await response.text(), /SECRET|core/);
  }
});

t.test('a request body trickled in is cut at HTTP_REQUEST_TIMEOUT_MS; WebSockets are not', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url, httpRequestTimeoutMs: 500 });
  const ws = await TestSocket.open(gw.busUrl);
  t.teardown(() => ws.close());

  const socket = connect(gw.port, '127.0.0.1');
  await once(socket, 'connect');
  let answer = '';
  socket.on('data', (chunk: Buffer) => { answer += chunk.toString(); });
  const started = Date.now();
  socket.write('POST /bus/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"type":');
  // One more byte now and then, as a slow-loris client keeps a socket.
  const drip = setInterval(() => socket.write(' '), 100);
  t.teardown(() => clearInterval(drip));
  await Promise.race([once(socket, 'close'), new Promise((_, reject) => setTimeout(() => reject(new Error('the slow request was not cut within 5 s')), 5000))]);
  clearInterval(drip);
  const took = Date.now() - started;
  t.ok(took >= 450, `not before the timeout (${took} ms)`);
  t.match(answer, /^HTTP\/1\.1 408/, 'answered 408 Request Timeout');

  ws.send({ action: 'ping' });
  t.match(await ws.next((frame) => 'pong' in frame), { pong: Number }, 'a WebSocket open for longer than the timeout still works');
});

t.test('a config file with the same field twice is an error naming the line', async (t) => {
  const text = '{\n  "tokens": [{\n    "name": "svc",\n    "admin": false,\n    "token": "svc-token-0123456789",\n    "admin": true\n  }]\n}\n';
  t.throws(() => parseEdgeConfig(text, 'brainstem.config.json', '/tmp'), new ConfigError(
    'brainstem.config.json:6:5: not valid JSON: duplicate field "admin" (its first value is on line 4)',
  ));
});

t.test('JSON nested too deeply is INVALID_FRAME, on the bus and over HTTP; the connection goes on', async (t) => {
  t.ok(nestsDeeperThan(Buffer.from(`${'['.repeat(300)}${']'.repeat(300)}`)));
  t.ok(nestsDeeperThan(`${'['.repeat(257)}${']'.repeat(257)}`), 'one level too deep, in the fewest bytes it takes');
  t.notOk(nestsDeeperThan(`${'['.repeat(256)}${']'.repeat(256)}`), 'the deepest allowed');
  t.notOk(nestsDeeperThan(Buffer.from(`["${'['.repeat(300)}"]`)), 'brackets in a string do not count');
  t.notOk(nestsDeeperThan(Buffer.from(`{"a":"\\"${'{'.repeat(300)}"}`)), 'nor after an escaped quote');
  t.ok(nestsDeeperThan(`{"a":"\\\\","b":${'['.repeat(300)}${']'.repeat(300)}}`), 'a string ending in an escaped backslash ends there');
  t.ok(valueNestsDeeperThan(JSON.parse(`{"a":${'['.repeat(300)}${']'.repeat(300)}}`)));
  t.notOk(valueNestsDeeperThan({ a: [[1, 2], { b: [3] }] }));

  const gw = await startGateway(t, { redisUrl: redis.url });
  const ws = await TestSocket.open(gw.busUrl);
  t.teardown(() => ws.close());
  await ws.call({ action: 'subscribe', topic: 'deep.>' });
  // Text, as a client would send it: Node itself cannot stringify it.
  const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
  const frames = {
    publish: `{"action":"publish","id":"publish","message":{"type":"deep.x","payload":${deep}}}`,
    enqueue: `{"action":"enqueue","id":"enqueue","queue":"deep.work","task":${deep}}`,
  };
  for (const [action, frame] of Object.entries(frames)) {
    ws.send(frame);
    t.match(await ws.next((f) => f.id === action), { code: 'INVALID_FRAME', error: /nests deeper than 256 levels/ }, action);
  }
  const overHttp = await fetch(`${gw.httpUrl}/bus/publish`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"type":"deep.x","payload":${deep}}`,
  });
  t.equal(overHttp.status, 400);
  t.match(await overHttp.json(), { code: 'INVALID_FRAME' });
  t.match(await ws.call({ action: 'publish', message: { type: 'deep.ok', payload: [[[1]]] } }), { ok: true, delivered: 1 });
  t.match(await ws.event(), { event: { type: 'deep.ok' } }, 'the first event is the valid one: nothing deep was delivered');
});
