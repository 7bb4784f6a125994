import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import t from 'tap';
import { buildApp } from '../app.js';
import { lockDataDir } from '../src/redis/data-dir-lock.js';
import { RedisSupervisor, RedisUnavailableError } from '../src/redis/redis-supervisor.js';
import { startGateway } from './helpers/gateway.js';
import { serverEntry } from './helpers/process.js';
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
  // What a gateway killed with -9 leaves: its redis-server, still up on the folder's socket (the folder's lock died with the gateway).
  const socketPath = join(dir, 'redis.sock');
  const orphan = spawn('redis-server', [
    '--port', '0', '--unixsocket', socketPath, '--dir', dir, '--pidfile', join(dir, 'redis.pid'),
    '--appendonly', 'yes', '--save', '', '--loglevel', 'warning',
  ], { stdio: 'ignore', detached: true });
  const orphanExited = once(orphan, 'exit');
  t.teardown(() => { if (orphan.exitCode === null && orphan.signalCode === null) orphan.kill('SIGKILL'); });
  const writer = new Redis({ path: socketPath, retryStrategy: () => 20 });
  writer.on('error', () => {});
  await writer.set('kept', '1');
  writer.disconnect();

  const second = new RedisSupervisor({ bin: 'redis-server', dir, log: silent });
  await second.start();
  t.teardown(() => second.stop());
  t.not(second.pid, orphan.pid);
  await orphanExited;
  t.pass('the orphan was shut down');
  const reader = new Redis({ path: second.socketPath });
  t.equal(await reader.get('kept'), '1', 'and its data kept');
  reader.disconnect();
});

t.test('a second gateway on the same data folder is refused, and the first keeps its Redis', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'brainstem-shared-dir-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const first = await startGateway(t, { dataDir });
  const redisPid = first.app.redis.supervisor?.pid as number;

  // A real process, as a second PM2 cluster worker or a second `npm start` would be.
  const second = spawn(process.execPath, [serverEntry], {
    env: { ...process.env, DATA_DIR: dataDir, PORT: '0', REDIS_URL: '', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.teardown(() => { if (second.exitCode === null && second.signalCode === null) second.kill('SIGKILL'); });
  let stderr = '';
  second.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const [code] = await once(second, 'exit') as [number | null];
  t.equal(code, 1, 'the second gateway exits with status 1');
  t.match(stderr, `another gateway (pid ${process.pid}) already runs the embedded Redis in ${join(dataDir, 'redis')}`);
  t.match(stderr, 'set REDIS_URL', 'and says what to do instead');
  t.equal(first.app.redis.supervisor?.pid, redisPid, "the first gateway's redis-server was left alone");
  await first.app.redis.client.set('still', 'here');
  t.equal(await first.app.redis.client.get('still'), 'here');

  await first.app.close();
  const third = await buildApp({ logger: false, dataDir });
  t.teardown(() => third.close());
  t.ok(third.redis.supervisor?.pid, 'once the first has closed, the folder is free again');
});

t.test('the data folder lock: one holder at a time, free again once released', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'brainstem-lock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const lock = await lockDataDir(dir);
  await t.rejects(lockDataDir(dir), { name: 'DataDirBusyError', message: new RegExp(`pid ${process.pid}\\)`) });
  await lock.release();
  const again = await lockDataDir(dir);
  await again.release();
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
