import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { HeartbeatClient, type HeartbeatReply } from '../src/heartbeat/heartbeat-client.js';
import { startGateway } from './helpers/gateway.js';
import { TestSocket, until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;

const seedClientUrl = new URL('./fixtures/seed/HeartbeatClient.js', import.meta.url).href;

t.test("the user's original HeartbeatClient beats against the gateway at its default path", async (t) => {
  const gw = await startGateway(t);
  const sub = await TestSocket.open(gw.busUrl);
  t.teardown(() => sub.close());
  await sub.call({ action: 'subscribe', topic: 'heartbeat.ping' });

  // Unchanged fixture, default options: the URL comes from PROXY_PORT and
  // the name from the `name` variable PM2 sets, as in the user's services.
  const script = `
    import { HeartbeatClient } from ${JSON.stringify(seedClientUrl)};
    let beats = 0;
    const client = new HeartbeatClient({
      interval: 100,
      onHeartbeat(data) {
        console.log(JSON.stringify({ url: client.url, data }));
        if (++beats === 3) client.stop();
      },
    });
    client.start();
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, PROXY_PORT: String(gw.port), name: 'seed-tts' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk; });
  const [code] = await once(child, 'exit');
  t.equal(code, 0, 'the client stops after three beats and the process ends');

  const lines = stdout.trim().split('\n').map((line) => JSON.parse(line) as { url: string; data: Frame });
  // Its ticks may overlap on a busy machine: a beat already sent when stop() runs still lands.
  t.ok(lines.length >= 3, `${lines.length} beats answered`);
  t.equal(lines[0]?.url, `http://127.0.0.1:${gw.port}/heartbeat/heartbeat`, 'its default URL');
  for (const { data } of lines) {
    t.same(Object.keys(data), ['status', 'pid', 'name', 'cpu', 'memory', 'netRx', 'netTx']);
    t.match(data, { status: 'ok', pid: child.pid, name: 'seed-tts' });
  }
  t.match((await sub.event('heartbeat.ping')).event, { source: 'heartbeat', payload: { pid: child.pid, name: 'seed-tts', local: true } });
  const records = await (await fetch(`${gw.httpUrl}/heartbeats`)).json() as Frame[];
  t.match(records, [{ pid: child.pid, name: 'seed-tts', status: 'alive' }]);
});

t.test("the original client takes a 409 as a failed beat, and still requires a name", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'brainstem-eco-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ecosystem.config.cjs'), 'module.exports = { apps: [{ name: "tts", instances: 1 }] };\n');
  const gw = await startGateway(t, { ecosystemConfig: join(dir, 'ecosystem.config.cjs') });
  // @ts-expect-error: plain JavaScript fixture without types
  const { HeartbeatClient: SeedClient } = await import('./fixtures/seed/HeartbeatClient.js');
  const url = `${gw.httpUrl}/heartbeat/heartbeat`;
  // The first is this process beating for itself (its pid proven, so it holds the one instance).
  const first = new SeedClient({ url, name: 'tts' });
  const second = new SeedClient({ url, pid: 3_999_102, name: 'tts' });
  t.match(await first.sendOnce(), { status: 'ok' });
  await t.rejects(second.sendOnce(), { message: 'heartbeat failed with status 409' });
  t.throws(() => new SeedClient({ url }), { message: 'name required for HeartbeatClient' });
});

t.test('the TypeScript HeartbeatClient: same options and defaults, beats at once, reports failures', async (t) => {
  const gw = await startGateway(t);
  const previousPort = process.env.PROXY_PORT;
  process.env.PROXY_PORT = String(gw.port);
  t.teardown(() => {
    if (previousPort === undefined) delete process.env.PROXY_PORT;
    else process.env.PROXY_PORT = previousPort;
  });

  const replies: HeartbeatReply[] = [];
  const client = new HeartbeatClient({ name: 'cephalon', interval: 100, onHeartbeat: (reply) => replies.push(reply) });
  t.equal(client.url, `http://127.0.0.1:${gw.port}/heartbeat/heartbeat`, 'default URL from PROXY_PORT');
  t.equal(client.pid, process.pid);
  t.equal(client.interval, 100);
  client.start();
  client.start();
  await until(() => replies.length >= 3);
  client.stop();
  const count = replies.length;
  // Barrier: a second client with the same interval beats three times, so the stopped one had its turns.
  const witness: HeartbeatReply[] = [];
  const other = new HeartbeatClient({ name: 'witness', interval: 100, onHeartbeat: (reply) => witness.push(reply) });
  other.start();
  await until(() => witness.length >= 3, 5000, 'three beats of the witness client');
  other.stop();
  t.equal(replies.length, count, 'no beat after stop()');
  t.match(replies[0], { status: 'ok', pid: process.pid, name: 'cephalon', cpu: Number, memory: Number, netRx: Number, netTx: Number });

  const slow: HeartbeatReply[] = [];
  const patient = new HeartbeatClient({ name: 'cephalon', interval: 60_000, onHeartbeat: (reply) => slow.push(reply) });
  patient.start();
  await until(() => slow.length === 1, 10_000);
  patient.stop();
  t.pass('the first beat leaves at once, not after one interval');

  t.throws(() => new HeartbeatClient({}), { message: 'name required for HeartbeatClient' });
  const previousName = process.env.name;
  process.env.name = 'from-pm2';
  t.teardown(() => {
    if (previousName === undefined) delete process.env.name;
    else process.env.name = previousName;
  });
  t.equal(new HeartbeatClient().name, 'from-pm2', 'name defaults to the `name` variable PM2 sets');

  const errors: Error[] = [];
  const bad = new HeartbeatClient({ name: 'tts', pid: 0, interval: 100, onError: (err) => errors.push(err) });
  await t.rejects(bad.sendOnce(), { message: 'heartbeat failed with status 400: pid and name required' });
  bad.start();
  await until(() => errors.length >= 1);
  bad.stop();
  t.match(errors[0]?.message, /status 400/);
});
