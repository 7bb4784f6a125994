import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { defaultEcosystemPath, instancesOf, loadInstanceLimits } from '../src/heartbeat/instance-limits.js';
import { isLoopback, parseNetDev, readProcessIdentity, sampleProcess } from '../src/heartbeat/process-metrics.js';

t.test('network bytes are summed over every interface of /proc/PID/net/dev', async (t) => {
  const text = [
    'Inter-|   Receive                                                |  Transmit',
    ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
    '    lo:     100       1    0    0    0     0          0         0      200       2    0    0    0     0       0          0',
    '  eth0:1234567890  9    0    0    0     0          0         0 987654321       3    0    0    0     0       0          0',
    'garbage line',
  ].join('\n');
  t.same(parseNetDev(text), { netRx: 100 + 1234567890, netTx: 200 + 987654321 });
  t.same(parseNetDev(''), { netRx: 0, netTx: 0 });
});

t.test('a process is identified by its start time, which survives exec and ends with the process', async (t) => {
  const child = spawn('sleep', ['300'], { stdio: 'ignore' });
  t.teardown(() => child.kill('SIGKILL'));
  const pid = child.pid as number;
  const identity = await readProcessIdentity(pid);
  t.match(identity, { startTime: /^\d+$/ });
  const self = await readProcessIdentity(process.pid);
  t.ok(Number(self?.startTime) <= Number(identity?.startTime), 'this process started first');
  const sample = await sampleProcess(pid);
  t.ok(sample.metrics.memory > 0);
  t.ok(sample.elapsedMs !== null && sample.elapsedMs >= 0);

  child.kill('SIGTERM');
  await once(child, 'exit');
  t.equal(await readProcessIdentity(pid), null, 'gone');
  t.same(await sampleProcess(pid), { metrics: { cpu: 0, memory: 0, netRx: 0, netTx: 0 }, elapsedMs: null }, 'a gone process still gives a beat its zeros');
});

t.test('loopback is 127.0.0.0/8 and ::1, IPv4-mapped included; nothing else', async (t) => {
  for (const address of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1']) t.ok(isLoopback(address), address);
  for (const address of ['10.1.2.3', '192.168.0.1', '::ffff:10.0.0.1', 'fe80::1', '0.0.0.0', '', undefined, '127.0.0.1.evil']) {
    t.notOk(isLoopback(address), String(address));
  }
});

t.test("PM2's instances: a count, max or 0 for one per core, -N for all but N", async (t) => {
  t.equal(instancesOf(undefined, 8), 1);
  t.equal(instancesOf(3, 8), 3);
  t.equal(instancesOf('4', 8), 4);
  t.equal(instancesOf('max', 8), 8);
  t.equal(instancesOf(0, 8), 8);
  t.equal(instancesOf(-1, 8), 7);
  t.equal(instancesOf(-9, 8), 1);
  t.equal(instancesOf('many', 8), 1);
});

t.test('instance limits load from an ecosystem file; a broken one gives none and says why', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'brainstem-eco-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, 'ecosystem.config.cjs');
  writeFileSync(good, 'module.exports = { apps: [{ name: "tts", instances: 2 }, { name: "" }, { script: "x.js" }] };\n');
  t.same(Object.fromEntries(loadInstanceLimits(good).limits), { tts: 2 });
  writeFileSync(good, 'module.exports = { apps: [{ name: "tts", instances: 3 }] };\n');
  t.same(Object.fromEntries(loadInstanceLimits(good).limits), { tts: 3 }, 'read afresh, not from the require cache');

  const broken = join(dir, 'broken.cjs');
  writeFileSync(broken, 'module.exports = {');
  const loaded = loadInstanceLimits(broken);
  t.equal(loaded.limits.size, 0);
  t.match(loaded.problem, /Unexpected|SyntaxError|end of input/);
  t.match(loadInstanceLimits(join(dir, 'missing.cjs')).problem, /Cannot find module/);

  const project = defaultEcosystemPath();
  t.match(project, /ecosystem\.config\.cjs$/);
  t.ok(loadInstanceLimits(project).limits.has('brainstem'), "the project's own file is the default");
});
