import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import t from 'tap';
import type { BuildOptions } from '../app.js';
import { readProcessIdentity } from '../src/heartbeat/process-metrics.js';
import { RedisHeartbeatStore } from '../src/heartbeat/redis-heartbeat-store.js';
import { beatingProcess } from './helpers/beating-process.js';
import { startGateway } from './helpers/gateway.js';
import { isRunning } from './helpers/process.js';
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

/** A live pid that never beats itself: `sleep 300`. Killed at teardown if still there. */
function sleeper(t: Teardown): Sleeper {
  const child = spawn('sleep', ['300'], { stdio: 'ignore' });
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, pid: child.pid as number, exited };
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
  const sleep = await beatingProcess(t);
  t.equal(await sleep.beat(`${gw.httpUrl}/heartbeat`, 'stt'), 200);
  const ping = (await sub.event('heartbeat.ping')).event as Frame;
  t.match(ping.payload, { pid: sleep.pid, name: 'stt', local: true, proven: true, startTime: /^\d+$/ });

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
  const deaf = await beatingProcess(t, { ignoreSigterm: true });
  t.equal(await deaf.beat(`${gw.httpUrl}/heartbeat`, 'tts'), 200);
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
  const sleep = await beatingProcess(t);
  t.equal(await sleep.beat(`${gw.httpUrl}/heartbeat`, 'stt'), 200);
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
  const sleep = await beatingProcess(t);
  t.equal(await sleep.beat(`${gw.httpUrl}/heartbeat`, 'stt'), 200);
  const { event } = await sub.event('heartbeat.down', 3000) as { event: Frame };
  t.match(event.payload, { pid: sleep.pid, action: 'reported', reason: 'stopping disabled' });
  await settle(600);
  t.ok(isRunning(sleep.pid));

  // It beats again: alive again, and reported again when it next goes quiet.
  t.equal(await sleep.beat(`${gw.httpUrl}/heartbeat`, 'stt'), 200);
  const [record] = await (await fetch(`${gw.httpUrl}/heartbeats`)).json() as Frame[];
  t.match(record, { status: 'alive' });
  t.notOk('downAt' in (record as Frame));
  t.match((await sub.event('heartbeat.down', 3000)).event, { payload: { pid: sleep.pid, action: 'reported' } });
});

t.test('a process that exits on its own is reported, not signalled', async (t) => {
  const gw = await startGateway(t, FAST);
  const sub = await downEvents(t, gw.busUrl);
  const sleep = await beatingProcess(t);
  t.equal(await sleep.beat(`${gw.httpUrl}/heartbeat`, 'stt'), 200);
  sleep.child.kill('SIGINT');
  await sleep.exited;
  const { event } = await sub.event('heartbeat.down', 3000) as { event: Frame };
  t.match(event.payload, { pid: sleep.pid, action: 'reported', reason: 'already exited' });
});

t.test('after a restart, records left by a crashed gateway are judged only a full timeout later', async (t) => {
  const bootedAt = Date.now();
  const gw = await startGateway(t, { ...FAST, heartbeatTimeoutMs: 3000 });
  const sub = await downEvents(t, gw.busUrl);
  const returning = await beatingProcess(t);
  const gone = sleeper(t);
  // What a crashed gateway leaves behind: records of local processes, last heard a minute ago, never ended.
  const { store } = gw.app.heartbeat;
  for (const { pid } of [returning, gone]) {
    await store.saveBeat({
      pid, name: `svc-${pid}`, last: Date.now() - 60_000, sessionId: 'crashed', cpu: 0, memory: 0, netRx: 0, netTx: 0,
      startTime: (await readProcessIdentity(pid))?.startTime ?? null, local: true, proven: true, firstBeat: Date.now() - 120_000,
    });
  }
  t.equal(await returning.beat(`${gw.httpUrl}/heartbeat`, `svc-${returning.pid}`), 200, 'one service beats again soon after the restart');

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
  const service = await beatingProcess(t);
  const beat = () => service.beat(`${gw.httpUrl}/heartbeat`, 'stt');
  t.equal(await beat(), 200);

  // The service keeps beating through an outage longer than the timeout...
  await redis.stop();
  await until(() => !gw.app.redis.isReady());
  const refused: number[] = [];
  for (const startedAt = Date.now(); Date.now() - startedAt < 2500;) {
    refused.push(await beat());
    await settle(200);
  }
  await redis.restart();
  for (const deadline = Date.now() + 10_000; !gw.app.redis.isReady();) {
    if (Date.now() > deadline) throw new Error('Redis not ready again within 10 s');
    refused.push(await beat());
    await settle(50);
  }
  t.ok(refused.filter((status) => status === 503).length >= 5, 'beats were refused during the outage');
  // ...and its next beat comes half a second after the store is back.
  await settle(500);
  t.equal(await beat(), 200);
  await settle(300);
  t.ok(isRunning(service.pid), 'still running');
  t.ok(await sub.nothing((f) => 'event' in f && (f.event as Frame).type === 'heartbeat.down'), 'never reported down');
});

const seedClientUrl = new URL('./fixtures/seed/HeartbeatClient.js', import.meta.url).href;

/** A node process running `script` (an ES module), its stdout lines parsed as JSON. Killed at teardown. */
function nodeProcess(t: Teardown, script: string, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  const firstLine = new Promise<Frame>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const newline = out.indexOf('\n');
      if (newline >= 0) resolve(JSON.parse(out.slice(0, newline)) as Frame);
    });
    void exited.then(() => reject(new Error(`process exited before printing: ${out}`)));
  });
  return { child, exited, firstLine };
}

t.test("a beat naming a pid its sender does not hold: that process is never signalled, the down event says unverified pid", async (t) => {
  const gw = await startGateway(t, FAST);
  const sub = await downEvents(t, gw.busUrl);
  // The poster starts a `sleep 300` of its own (before it connects: the
  // sleep holds none of its sockets), beats with the sleep's pid from its
  // own connection, and goes quiet.
  const poster = nodeProcess(t, `
    import { spawn } from 'node:child_process';
    const sleep = spawn('sleep', ['300'], { stdio: 'ignore' });
    const res = await fetch(process.env.BEAT_URL, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ pid: sleep.pid, name: 'squatter' }),
    });
    console.log(JSON.stringify({ sleepPid: sleep.pid, status: res.status, reply: await res.json() }));
    setInterval(() => {}, 60_000);
  `, { BEAT_URL: `${gw.httpUrl}/heartbeat` });
  const { sleepPid, status, reply } = await poster.firstLine as { sleepPid: number; status: number; reply: Frame };
  t.teardown(() => { if (isRunning(sleepPid)) process.kill(sleepPid, 'SIGKILL'); });
  t.equal(status, 200, 'the beat itself is accepted');
  t.match(reply, { status: 'ok', pid: sleepPid, cpu: 0, memory: 0, netRx: 0, netTx: 0 }, "no figures of a process the sender did not prove it is");
  t.match((await sub.event('heartbeat.ping')).event, { payload: { pid: sleepPid, local: true, proven: false } });

  const { event } = await sub.event('heartbeat.down', 3000) as { event: Frame };
  t.same(event.payload, { pid: sleepPid, name: 'squatter', last: (event.payload as Frame).last, action: 'reported', reason: 'unverified pid' });
  // The down event is published after any signal would have been sent: the sleep is still there, untouched.
  t.ok(isRunning(sleepPid), 'the sleep was not signalled');
  const [record] = await (await fetch(`${gw.httpUrl}/heartbeats`)).json() as Frame[];
  t.match(record, { pid: sleepPid, status: 'stale', proven: false, downAt: Number });
  t.notOk('killedAt' in (record as Frame), 'not marked killed');
  t.equal(poster.child.exitCode, null, 'and the poster, which named someone else, is not stopped either');
});

t.test("the user's own HeartbeatClient, beating from its own process, is still stopped when it goes quiet", async (t) => {
  const gw = await startGateway(t, FAST);
  const sub = await downEvents(t, gw.busUrl);
  // The seed's client, unchanged: pid defaults to its own process's. One beat, then the service hangs.
  const service = nodeProcess(t, `
    import { HeartbeatClient } from ${JSON.stringify(seedClientUrl)};
    const client = new HeartbeatClient({ name: 'seed-stt' });
    console.log(JSON.stringify(await client.sendOnce()));
    setInterval(() => {}, 60_000);
  `, { PROXY_PORT: String(gw.port) });
  const reply = await service.firstLine;
  t.match(reply, { status: 'ok', pid: service.child.pid, name: 'seed-stt' });
  t.ok((reply.memory as number) > 1024 * 1024, 'its own figures are reported: it proved its pid');

  const { event } = await sub.event('heartbeat.down', 3000) as { event: Frame };
  t.match(event.payload, { pid: service.child.pid, name: 'seed-stt', action: 'stopped' });
  t.equal((await service.exited).signal, 'SIGTERM', 'stopped with SIGTERM');
});
