import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import t from 'tap';
import type { BuildOptions } from '../app.js';
import { readProcessIdentity } from '../src/heartbeat/process-metrics.js';
import { RedisHeartbeatStore } from '../src/heartbeat/redis-heartbeat-store.js';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;
type Teardown = { teardown(fn: () => unknown): void };

/** Short timeouts so a quiet service is found within a fraction of a second. */
const FAST: BuildOptions = { heartbeatTimeoutMs: 300, heartbeatCheckIntervalMs: 100, heartbeatStopGraceMs: 400 };

interface Sleeper {
  child: ChildProcess;
  pid: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** A real process to be watched: `sleep 300`, optionally deaf to SIGTERM. Killed at teardown if still there. */
function sleeper(t: Teardown, ignoreSigterm = false): Sleeper {
  // `exec` keeps the ignored SIGTERM disposition, so the sleep itself is deaf to it.
  const child = ignoreSigterm
    ? spawn('sh', ['-c', 'trap "" TERM; exec sleep 300'], { stdio: 'ignore' })
    : spawn('sleep', ['300'], { stdio: 'ignore' });
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, pid: child.pid as number, exited };
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function downEvents(t: Teardown, busUrl: string): Promise<TestSocket> {
  const sub = await TestSocket.open(`${busUrl}?name=watcher`);
  t.teardown(() => sub.close());
  await sub.call({ action: 'subscribe', topic: 'heartbeat.*' });
  return sub;
}

async function beat(httpUrl: string, pid: number, name: string): Promise<number> {
  const res = await fetch(`${httpUrl}/heartbeat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ pid, name }),
  });
  await res.body?.cancel();
  return res.status;
}

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('a real process that beats once and goes quiet is reported down and stopped with SIGTERM', async (t) => {
  const gw = await startGateway(t, FAST);
  const sub = await downEvents(t, gw.busUrl);
  const sleep = sleeper(t);
  t.equal(await beat(gw.httpUrl, sleep.pid, 'stt'), 200);
  const ping = (await sub.event('heartbeat.ping')).event as Frame;
  t.match(ping.payload, { pid: sleep.pid, name: 'stt', local: true, startTime: /^\d+$/ });

  const { event } = await sub.event('heartbeat.down', 3000) as { event: Frame };
  t.equal(event.source, 'heartbeat');
  t.same(event.payload, { pid: sleep.pid, name: 'stt', last: (ping.payload as Frame).last, action: 'stopped' });
  const exit = await sleep.exited;
  t.equal(exit.signal, 'SIGTERM', 'stopped with SIGTERM first');
  t.notOk(isRunning(sleep.pid), 'the process is really gone');

  const res = await fetch(`${gw.httpUrl}/heartbeats`);
  const [record] = await res.json() as Frame[];
  t.match(record, { pid: sleep.pid, status: 'stopped', killedAt: Number, downAt: Number });
  t.ok(await sub.nothing((f) => 'event' in f), 'reported once, not every check');
});

t.test('a process that ignores SIGTERM gets SIGKILL after the grace period', async (t) => {
  const gw = await startGateway(t, { ...FAST, heartbeatStopGraceMs: 1500 });
  const sub = await downEvents(t, gw.busUrl);
  const deaf = sleeper(t, true);
  // Give sh the moment it needs to set the trap and exec.
  await settle(100);
  t.equal(await beat(gw.httpUrl, deaf.pid, 'tts'), 200);
  const { event } = await sub.event('heartbeat.down', 3000) as { event: Frame };
  const downAt = Date.now();
  t.match(event.payload, { pid: deaf.pid, action: 'stopped' });
  await settle(200);
  t.ok(isRunning(deaf.pid), 'SIGTERM ignored: still running within the grace period');
  const exit = await deaf.exited;
  t.equal(exit.signal, 'SIGKILL');
  t.ok(Date.now() - downAt >= 1400, 'SIGKILL only after the grace period');
});

t.test('a pid whose start time no longer matches is reported, never signalled', async (t) => {
  // A timeout long enough for the record to be altered before anyone is judged.
  const gw = await startGateway(t, { ...FAST, heartbeatTimeoutMs: 1500 });
  const sub = await downEvents(t, gw.busUrl);
  const sleep = sleeper(t);
  t.equal(await beat(gw.httpUrl, sleep.pid, 'stt'), 200);
  await sub.event('heartbeat.ping');
  // As if the service died and the kernel gave its pid to this stranger:
  // the record keeps the start time of the process that beat.
  const store = gw.app.heartbeat.store as RedisHeartbeatStore;
  await gw.app.redis.client.hset(store.keyOf(sleep.pid), 'startTime', '1');

  const { event } = await sub.event('heartbeat.down', 5000) as { event: Frame };
  t.match(event.payload, { pid: sleep.pid, name: 'stt', action: 'reported', reason: 'pid reused' });
  await settle(600);
  t.ok(isRunning(sleep.pid), 'the stranger was not signalled');
  t.equal(sleep.child.signalCode, null);
  const [record] = await (await fetch(`${gw.httpUrl}/heartbeats`)).json() as Frame[];
  t.match(record, { pid: sleep.pid, status: 'stale', downAt: Number });
  t.notOk('killedAt' in (record as Frame), 'not marked killed: nothing was killed');
});

t.test('a beat from another machine is never eligible for stopping', async (t) => {
  const gw = await startGateway(t, FAST);
  const sub = await downEvents(t, gw.busUrl);
  const sleep = sleeper(t);
  const res = await gw.app.inject({ method: 'POST', url: '/heartbeat', payload: { pid: sleep.pid, name: 'remote-tts' }, remoteAddress: '10.1.2.3' });
  t.equal(res.statusCode, 200);
  t.match(res.json(), { status: 'ok', pid: sleep.pid, cpu: 0, memory: 0, netRx: 0, netTx: 0 },
    'no metrics: the pid names a process on the sender\'s machine, not this one');
  const ping = (await sub.event('heartbeat.ping')).event as Frame;
  t.match(ping.payload, { pid: sleep.pid, local: false, startTime: null });

  const { event } = await sub.event('heartbeat.down', 3000) as { event: Frame };
  t.match(event.payload, { pid: sleep.pid, action: 'reported', reason: 'not local' });
  await settle(600);
  t.ok(isRunning(sleep.pid), 'this machine\'s process with that pid is untouched');

  // A mapped IPv4 loopback peer is local.
  const local = await gw.app.inject({ method: 'POST', url: '/heartbeat', payload: { pid: sleep.pid, name: 'tts' }, remoteAddress: '::ffff:127.0.0.1' });
  t.equal(local.statusCode, 200);
  t.match((await sub.event('heartbeat.ping')).event, { payload: { local: true } });
});

t.test('pid 1 and the gateway itself are never signalled', async (t) => {
  const gw = await startGateway(t, FAST);
  const sub = await downEvents(t, gw.busUrl);
  t.equal(await beat(gw.httpUrl, process.pid, 'brainstem'), 200);
  t.equal(await beat(gw.httpUrl, 1, 'init'), 200);
  const reports = [
    ((await sub.event('heartbeat.down', 3000)).event as Frame).payload as Frame,
    ((await sub.event('heartbeat.down', 3000)).event as Frame).payload as Frame,
  ].sort((a, b) => (a.pid as number) - (b.pid as number));
  t.match(reports, [
    { pid: 1, action: 'reported', reason: 'protected pid' },
    { pid: process.pid, action: 'reported', reason: 'protected pid' },
  ]);
});

t.test('with stopping turned off, a quiet local process is only reported', async (t) => {
  const gw = await startGateway(t, { ...FAST, heartbeatTimeoutMs: 1000, heartbeatStop: false });
  const sub = await downEvents(t, gw.busUrl);
  const sleep = sleeper(t);
  t.equal(await beat(gw.httpUrl, sleep.pid, 'stt'), 200);
  const { event } = await sub.event('heartbeat.down', 3000) as { event: Frame };
  t.match(event.payload, { pid: sleep.pid, action: 'reported', reason: 'stopping disabled' });
  await settle(600);
  t.ok(isRunning(sleep.pid));

  // It beats again: alive again, and reported again when it next goes quiet.
  t.equal(await beat(gw.httpUrl, sleep.pid, 'stt'), 200);
  const [record] = await (await fetch(`${gw.httpUrl}/heartbeats`)).json() as Frame[];
  t.match(record, { status: 'alive' });
  t.notOk('downAt' in (record as Frame));
  t.match((await sub.event('heartbeat.down', 3000)).event, { payload: { pid: sleep.pid, action: 'reported' } });
});

t.test('a process that exits on its own is reported, not signalled', async (t) => {
  const gw = await startGateway(t, FAST);
  const sub = await downEvents(t, gw.busUrl);
  const sleep = sleeper(t);
  t.equal(await beat(gw.httpUrl, sleep.pid, 'stt'), 200);
  sleep.child.kill('SIGINT');
  await sleep.exited;
  const { event } = await sub.event('heartbeat.down', 3000) as { event: Frame };
  t.match(event.payload, { pid: sleep.pid, action: 'reported', reason: 'already exited' });
});

t.test('after a restart, records left by a crashed gateway are judged only a full timeout later', async (t) => {
  const bootedAt = Date.now();
  const gw = await startGateway(t, { ...FAST, heartbeatTimeoutMs: 3000 });
  const sub = await downEvents(t, gw.busUrl);
  const returning = sleeper(t);
  const gone = sleeper(t);
  // What a crashed gateway leaves behind: records of local processes, last heard a minute ago, never ended.
  const { store } = gw.app.heartbeat;
  for (const { pid } of [returning, gone]) {
    await store.saveBeat({
      pid, name: `svc-${pid}`, last: Date.now() - 60_000, sessionId: 'crashed', cpu: 0, memory: 0, netRx: 0, netTx: 0,
      startTime: (await readProcessIdentity(pid))?.startTime ?? null, local: true, firstBeat: Date.now() - 120_000,
    });
  }
  t.equal(await beat(gw.httpUrl, returning.pid, `svc-${returning.pid}`), 200, 'one service beats again soon after the restart');

  const { event } = await sub.event('heartbeat.down', 8000) as { event: Frame };
  t.match(event.payload, { pid: gone.pid, action: 'stopped' });
  t.ok(Date.now() - bootedAt >= 3000, 'not before a full timeout after the boot');
  await gone.exited;
  t.ok(isRunning(returning.pid), 'the service that beat again was left alone');
});

t.test('a store outage longer than the timeout does not get beating services stopped', async (t) => {
  const redis = await startRedis(t);
  // Checks far more often than beats: the first check after the outage comes before the next beat.
  const gw = await startGateway(t, { ...FAST, heartbeatTimeoutMs: 2000, heartbeatCheckIntervalMs: 20, redisUrl: redis.url });
  const sub = await downEvents(t, gw.busUrl);
  const service = sleeper(t);
  t.equal(await beat(gw.httpUrl, service.pid, 'stt'), 200);

  // The service keeps beating through an outage longer than the timeout...
  await redis.stop();
  await until(() => !gw.app.redis.isReady());
  const refused: number[] = [];
  for (const startedAt = Date.now(); Date.now() - startedAt < 2500;) {
    refused.push(await beat(gw.httpUrl, service.pid, 'stt'));
    await settle(200);
  }
  await redis.restart();
  for (const deadline = Date.now() + 10_000; !gw.app.redis.isReady();) {
    if (Date.now() > deadline) throw new Error('Redis not ready again within 10 s');
    refused.push(await beat(gw.httpUrl, service.pid, 'stt'));
    await settle(50);
  }
  t.ok(refused.filter((status) => status === 503).length >= 5, 'beats were refused during the outage');
  // ...and its next beat comes half a second after the store is back.
  await settle(500);
  t.equal(await beat(gw.httpUrl, service.pid, 'stt'), 200);
  await settle(300);
  t.ok(isRunning(service.pid), 'still running');
  t.ok(await sub.nothing((f) => 'event' in f && (f.event as Frame).type === 'heartbeat.down'), 'never reported down');
});
