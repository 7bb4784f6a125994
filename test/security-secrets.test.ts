import { Writable } from 'node:stream';
import t from 'tap';
import { bearer, edgeConfig, tokenSpec } from './helpers/edge.js';
import { startGateway } from './helpers/gateway.js';
import { freePort } from './helpers/ports.js';
import { rawRequest, upgradeStatus } from './helpers/raw-http.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket } from './helpers/test-socket.js';
import { loadConfig } from '../src/config.js';
import { createRedactor, redactTokensInText } from '../src/redaction.js';

const REDIS_PASSWORD = 'redis-pw-Zq81x/Kk';
const MONGO_PASSWORD = 'mongo-pw-Uu52vLp';
const TOKEN = 'svc-token-7f3a9c0d1e2b';

t.test('one redaction rule for tokens in URLs, whatever the spelling', async (t) => {
  for (const url of ['/bus?token=S', '/bus?name=x&token=S&y=1', '/bus?%74oken=S', '/bus?%54OKEN=S', '/bus?name=x&TOKEN=S#f', '/bus?to%6Ben=S&x=1']) {
    t.notMatch(redactTokensInText(`Route GET:${url} not found`), /=S/, url);
  }
  t.equal(redactTokensInText('/bus?name=x&%74oken=S&y=1'), '/bus?name=x&%74oken=***&y=1');
  t.equal(redactTokensInText('/bus?tokens=keep&name=token'), '/bus?tokens=keep&name=token', 'other parameters stay');
  const redact = createRedactor(['redis://default:p%40ss-word@h:1', null]);
  t.equal(redact('{"msg":"auth p@ss-word failed"}'), '{"msg":"auth *** failed"}', 'a decoded password anywhere');
  t.equal(redact('{"url":"redis://default:p%40ss-word@h:1"}'), '{"url":"redis://***@h:1"}');
});

t.test('a bad REDIS_URL is reported without its password', async (t) => {
  t.throws(() => loadConfig({ REDIS_URL: `http://user:${REDIS_PASSWORD}@127.0.0.1:6379` }), { message: 'REDIS_URL="http://***@127.0.0.1:6379": expected a URL (redis: or rediss:)' });
});

t.test('credentials and tokens never leave: not in /health, answers, or any log line of a run', async (t) => {
  // No persistence: the gateway warns at start, quoting where Redis is.
  const redis = await startRedis(t, { password: REDIS_PASSWORD, appendonly: false });
  t.match(redis.url, /redis-pw-Zq81x%2FKk@/, 'the URL carries the (encoded) password');
  const deadMongo = await freePort();
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter((line) => line !== ''));
      done();
    },
  });
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    mongoUrl: `mongodb://brainstem:${MONGO_PASSWORD}@127.0.0.1:${deadMongo}/`,
    logger: { level: 'debug', stream },
    edge: edgeConfig({ tokens: [tokenSpec('svc', TOKEN, { publish: ['svc.>'], subscribe: ['svc.>'], queues: ['svc.>'] })] }),
  });

  const health = await rawRequest(`${gw.httpUrl}/health`);
  t.notMatch(health.body, /pw-/, '/health shows no password');
  const { dependencies } = JSON.parse(health.body) as { dependencies: Record<string, { ok: boolean; detail?: string }> };
  t.equal(dependencies.redis?.detail, `redis://***@127.0.0.1:${redis.port}`, 'it still says where Redis is');
  t.equal(dependencies.redis?.ok, true, 'and the gateway did log in with the password');

  const encoded = await rawRequest(`${gw.httpUrl}/queues?%74oken=${TOKEN}`);
  t.equal(encoded.status, 200, 'an encoded ?token= is a token to the query parser');
  const missing = await rawRequest(`${gw.httpUrl}/no-such-page?token=${TOKEN}`);
  t.equal(missing.status, 404);
  t.same(JSON.parse(missing.body), { error: 'Route GET:/no-such-page?token=*** not found', code: 'NOT_FOUND' }, 'the 404 quotes the URL masked');
  // @fastify/websocket accepts it and closes it at once, logging the path.
  t.equal(await upgradeStatus(`ws://127.0.0.1:${gw.port}/health?token=${TOKEN}`), 101, 'an upgrade to a route that is no WebSocket');
  t.equal(await upgradeStatus(`ws://127.0.0.1:${gw.port}/nowhere?TOKEN=${TOKEN}`), 404, 'an upgrade to no route at all');
  const bus = await TestSocket.open(`${gw.busUrl}?name=svc&token=${TOKEN}`);
  t.teardown(() => bus.close());
  t.match(await bus.call({ action: 'enqueue', queue: 'svc.work', task: { n: 1 } }), { ok: true });
  t.match(await bus.call({ action: 'publish', message: { type: 'other.x' } }), { code: 'FORBIDDEN' });
  const described = await rawRequest(`${gw.httpUrl}/bus`, { headers: bearer(TOKEN) });
  t.notMatch(described.body, /pw-|svc-token/, 'GET /bus shows neither');
  bus.close();
  await gw.app.close();

  const run = lines.join('\n');
  t.ok(lines.length > 20, `the run logged (${lines.length} lines)`);
  t.match(run, /redis can lose tasks/, 'the start-up warning about Redis was logged');
  t.match(run, /mongodb did not answer/, 'the MongoDB failure was logged');
  t.equal(dependencies.heartbeats?.ok, false, 'MongoDB is down, its error in /health');
  t.match(run, /\/no-such-page\?token=\*\*\*/, 'the 404 was logged, masked');
  t.match(run, /%74oken=\*\*\*/, 'the encoded token was logged, masked');
  t.match(run, /"path":"\/health\?token=\*\*\*","msg":"closed incoming websocket connection for path with no websocket handler"/, 'the refused upgrade was logged, masked');
  for (const secret of [REDIS_PASSWORD, encodeURIComponent(REDIS_PASSWORD), MONGO_PASSWORD, TOKEN]) {
    t.notOk(run.includes(secret), `no log line holds ${secret.slice(0, 8)}…`);
  }
});
