import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import t from 'tap';
import { buildApp } from '../app.js';
import { RedisSupervisor, RedisUnavailableError } from '../src/redis/redis-supervisor.js';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { until } from './helpers/test-socket.js';

const silent = { info() {}, warn() {}, error() {} };

t.test('the embedded redis-server is durable, restarted when it dies, stopped on close', async (t) => {
  const gw = await startGateway(t);
  const { supervisor } = gw.app.redis;
  t.ok(supervisor, 'no REDIS_URL: the gateway runs its own');
  const client = gw.app.redis.client;
  t.same(await client.config('GET', 'appendonly'), ['appendonly', 'yes']);
  t.same(await client.config('GET', 'maxmemory-policy'), ['maxmemory-policy', 'noeviction']);
  t.same(await client.config('GET', 'port'), ['port', '0'], 'no TCP port: the unix socket only');
  await client.set('k', 'v');

  const firstPid = supervisor?.pid as number;
  process.kill(firstPid, 'SIGKILL');
  await until(() => supervisor?.pid !== undefined && supervisor.pid !== firstPid, 10_000);
  await until(() => gw.app.redis.isReady(), 10_000);
  t.equal(await client.get('k'), 'v', 'the data survived through the append-only file');

  const health = await (await fetch(`${gw.httpUrl}/health`)).json();
  t.match(health, { dependencies: { redis: { ok: true, required: true } } });

  const pid = supervisor?.pid as number;
  await gw.app.close();
  t.throws(() => process.kill(pid, 0), 'redis-server is gone after app.close()');
});

t.test('a redis-server orphaned by a killed gateway is taken over', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'brainstem-orphan-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const first = new RedisSupervisor({ bin: 'redis-server', dir, log: silent });
  await first.start();
  const orphanPid = first.pid as number;
  const writer = new Redis({ path: first.socketPath });
  await writer.set('kept', '1');
  writer.disconnect();
  // The gateway died without stopping it: a new supervisor finds it running.
  const second = new RedisSupervisor({ bin: 'redis-server', dir, log: silent });
  await second.start();
  t.teardown(() => second.stop());
  t.not(second.pid, orphanPid);
  t.throws(() => process.kill(orphanPid, 0), 'the orphan was shut down');
  const reader = new Redis({ path: second.socketPath });
  t.equal(await reader.get('kept'), '1', 'and its data kept');
  reader.disconnect();
  await first.stop();
});

t.test('no redis-server binary: one clear line on how to install it', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'brainstem-nobin-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  await t.rejects(buildApp({ logger: false, dataDir, redisServerBin: '/nonexistent/redis-server' }),
    new RedisUnavailableError('/nonexistent/redis-server not found: install it (sudo apt-get install -y redis-server) or set REDIS_URL to a Redis server'));
});

t.test('REDIS_URL: uses that server; health follows it going down and coming back', async (t) => {
  const redis = await startRedis(t);
  const gw = await startGateway(t, { redisUrl: redis.url });
  t.equal(gw.app.redis.supervisor, null);
  t.equal((await fetch(`${gw.httpUrl}/health`)).status, 200);
  await redis.stop();
  await until(async () => (await fetch(`${gw.httpUrl}/health`)).status === 503);
  const body = await (await fetch(`${gw.httpUrl}/health`)).json();
  t.match(body, { status: 'degraded', dependencies: { redis: { ok: false }, bus: { ok: true } } });
  await redis.restart();
  await until(async () => (await fetch(`${gw.httpUrl}/health`)).status === 200, 10_000);
  t.pass('healthy again once Redis is back');
});
