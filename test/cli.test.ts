import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import t from 'tap';
import { brainstem, cli } from './helpers/cli.js';
import { startGateway } from './helpers/gateway.js';
import { freePort } from './helpers/ports.js';
import { until } from './helpers/test-socket.js';

/** A long-running command with its stdout and stderr as lines. */
function background(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child: ChildProcess = spawn(process.execPath, [cli, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => stdout.push(line));
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  return { child, stdout, stderr, exited };
}

t.test("brainstem sub 'a.>' prints what brainstem pub sends from another process", async (t) => {
  const gw = await startGateway(t);
  const sub = background(['sub', 'a.>', '--url', gw.busUrl]);
  t.teardown(() => { sub.child.kill('SIGKILL'); });
  await until(() => sub.stderr.some((line) => line.includes('subscribed to a.>')), 10_000);

  const pub = await brainstem(['pub', 'a.b', '{"x":1}', '--url', gw.busUrl]);
  t.equal(pub.code, 0, pub.stderr);
  t.same(JSON.parse(pub.stdout), { ok: true, delivered: 1 });
  await until(() => sub.stdout.length === 1);
  const event = JSON.parse(sub.stdout[0] as string);
  t.match(event, { type: 'a.b', payload: { x: 1 }, source: 'brainstem-cli' });

  // JSON Lines on stdin: each line is an event; a.b.c matches a.> too, b.c does not.
  await brainstem(['pub', 'a.b.c', '--url', gw.busUrl], { input: '{"n":1}\n{"n":2}\n' });
  await brainstem(['pub', 'b.c', '{"n":3}', '--url', gw.busUrl]);
  await until(() => sub.stdout.length === 3);
  t.same(sub.stdout.slice(1).map((line) => JSON.parse(line).payload), [{ n: 1 }, { n: 2 }]);

  sub.child.kill('SIGINT');
  const [code] = await sub.exited;
  t.equal(code, 0, 'interrupted is a normal end');
});

t.test('sub --count exits after that many events; an unreachable gateway exits 1', async (t) => {
  const gw = await startGateway(t);
  const sub = background(['sub', 'x.*', 'y.*', '--count', '2', '--url', gw.httpUrl]);
  t.teardown(() => { sub.child.kill('SIGKILL'); });
  await until(() => sub.stderr.some((line) => line.includes('subscribed')), 10_000);
  await brainstem(['pub', 'x.one', '1', '--url', gw.busUrl]);
  await brainstem(['pub', 'y.two', '2', '--url', gw.busUrl]);
  const [code] = await sub.exited;
  t.equal(code, 0);
  t.same(sub.stdout.map((line) => JSON.parse(line).payload), [1, 2]);

  const port = await freePort();
  const down = await brainstem(['pub', 'a.b', '{}', '--url', `ws://127.0.0.1:${port}/bus`]);
  t.equal(down.code, 1);
  t.match(down.stderr, /^brainstem: cannot connect to \S+: [^\n]*ECONNREFUSED[^\n]*\n$/, 'one line saying why');
});

t.test('enqueue prints a taskId; queues shows it waiting', async (t) => {
  const gw = await startGateway(t);
  const one = await brainstem(['enqueue', 'agent.think', '{"input":"hello"}', '--url', gw.busUrl]);
  t.equal(one.code, 0, one.stderr);
  t.match(one.stdout, /^\S+\n$/, 'one taskId on one line');
  const piped = await brainstem(['enqueue', 'agent.think', '--url', gw.busUrl, '--priority', '1'], { input: '{"input":"a"}\n{"input":"b"}\n' });
  t.equal(piped.stdout.trim().split('\n').length, 2, 'one taskId per line of stdin');
  const named = await brainstem(['enqueue', 'agent.think', '{}', '--job-id', 'job-x', '--url', gw.busUrl]);
  t.equal(named.stdout, 'job-x\n');

  const queues = await brainstem(['queues', '--url', gw.httpUrl]);
  t.equal(queues.code, 0, queues.stderr);
  const listed = JSON.parse(queues.stdout) as { queues: { name: string; counts: { waiting: number } }[] };
  t.equal(listed.queues.find((q) => q.name === 'agent.think')?.counts.waiting, 4);
  const single = await brainstem(['queues', 'agent.think', '--url', gw.busUrl]);
  t.equal(JSON.parse(single.stdout).tasks.waiting.length, 4);

  const refused = await brainstem(['enqueue', 'agent.think', '{}', '--attempts', '0', '--url', gw.busUrl]);
  t.equal(refused.code, 1);
  t.match(refused.stderr, /--attempts must be a whole number above 0/);
  const heartbeats = await brainstem(['heartbeats', '--url', gw.busUrl]);
  t.equal(heartbeats.code, 0, heartbeats.stderr);
  t.ok(Array.isArray(JSON.parse(heartbeats.stdout)), 'the heartbeat records, as JSON');
});
