import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { BrokerClient, type BusEvent } from '../src/client/index.js';
import { untilHealthy } from './helpers/process.js';
import { freePort } from './helpers/ports.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

/*
 * The project as its README says to run it under PM2: the real pm2 CLI,
 * `pm2 start ecosystem.config.cjs` from the project folder, with PM2_HOME
 * in a temporary folder and the ports, watched folder and data folder given
 * through the environment the ecosystem reads.
 */

// Two PM2 daemons with five processes each, one after the other: more than the
// default per-file time on a loaded 2-core machine.
t.setTimeout(300_000);

type Teardown = { teardown(fn: () => unknown): void };
interface Pm2App { name: string; pid: number; pm2_env: { status: string; restart_time: number; node_args: string[] } }

const root = fileURLToPath(new URL('..', import.meta.url));
const pm2Bin = join(root, 'node_modules/.bin/pm2');
const run = promisify(execFile);
const PM2_COMMAND_MS = 90_000;

/** PM2 homes still up when this file is cut short (a tap timeout does not run teardowns). */
const homes = new Set<string>();
function killDaemons(): void {
  for (const home of homes) {
    try {
      execFileSync(pm2Bin, ['kill'], { env: { ...userEnv(), PM2_HOME: home }, stdio: 'ignore', timeout: 30_000 });
    } catch {
      // Already gone.
    }
  }
}
process.once('exit', killDaemons);
process.once('SIGTERM', () => {
  killDaemons();
  process.exit(143);
});

/**
 * The environment a user's shell would have: without the test runner's loader and coverage, and without
 * the node_modules/.bin that npm put first on PATH, so PM2 itself runs on the machine's Node.
 */
function userEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) if (key === 'NODE_OPTIONS' || key.startsWith('NODE_V8_COVERAGE') || key.startsWith('TAP')) delete env[key];
  env.PATH = (env.PATH ?? '').split(delimiter).filter((dir) => !dir.endsWith(join('node_modules', '.bin'))).join(delimiter);
  return env;
}

const projectNode = realpathSync(join(root, 'node_modules/.bin/node'));
const { config } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { config: { nodeOptions: string } };

/** Every app PM2 runs is on the project's Node; the gateways with the Node options of `npm start`. */
async function checkRuntime(t: Test, pm: Pm2): Promise<void> {
  for (const app of await pm.apps()) {
    t.equal(realpathSync(`/proc/${app.pid}/exe`), projectNode, `${app.name} runs on node_modules/.bin/node`);
    // What PM2 starts the interpreter with: the process's own command line is gone, PM2 sets its title.
    if (app.name.startsWith('brainstem')) t.same(app.pm2_env.node_args, config.nodeOptions.split(' '), `${app.name} gets ${config.nodeOptions}`);
  }
}

interface Pm2 {
  home: string;
  cli(...args: string[]): Promise<string>;
  apps(): Promise<Pm2App[]>;
  pidOf(name: string): Promise<number>;
  daemonPid(): number;
}

/** A PM2 of its own (PM2_HOME in a temp folder), killed on teardown even if the test fails. */
function pm2(t: Teardown, env: Record<string, string>): Pm2 {
  const home = mkdtempSync(join(tmpdir(), 'brainstem-pm2-'));
  const fullEnv = { ...userEnv(), ...env, PM2_HOME: home };
  const cli = async (...args: string[]) => {
    try {
      return (await run(pm2Bin, args, { cwd: root, env: fullEnv, timeout: PM2_COMMAND_MS })).stdout;
    } catch (err) {
      const { stdout, stderr } = err as { stdout?: string; stderr?: string };
      throw new Error(`pm2 ${args.join(' ')} failed: ${(err as Error).message}\n${stdout ?? ''}\n${stderr ?? ''}`);
    }
  };
  homes.add(home);
  t.teardown(async () => {
    await cli('kill').catch(() => {});
    homes.delete(home);
    rmSync(home, { recursive: true, force: true });
  });
  const apps = async () => JSON.parse(await cli('jlist')) as Pm2App[];
  // The daemon's pid, once a command has started it.
  const daemonPid = () => Number(readFileSync(join(home, 'pm2.pid'), 'utf8').trim());
  const pidOf = async (name: string) => {
    const app = (await apps()).find((a) => a.name === name);
    if (!app || !app.pid) throw new Error(`pm2 lists no running ${name}`);
    return app.pid;
  };
  return { home, cli, apps, pidOf, daemonPid };
}

/** Alive and not a zombie: a process PM2 or a gateway left behind. */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function untilGone(pids: Map<string, number>, timeoutMs = 30_000): Promise<void> {
  await until(() => [...pids.values()].every((pid) => !isRunning(pid)), timeoutMs).catch(() => {
    const left = [...pids].filter(([, pid]) => isRunning(pid)).map(([what, pid]) => `${what} (pid ${pid})`);
    throw new Error(`still running ${timeoutMs} ms after pm2 kill: ${left.join(', ')}`);
  });
}

const EXAMPLES = ['file-watcher', 'reasoning', 'thinker'];

/** The example apps beat from the pids PM2 runs them as. */
async function untilExamplesBeat(httpUrl: string, pm: Pm2): Promise<void> {
  const expected = new Map<string, number>();
  for (const name of EXAMPLES) expected.set(name, await pm.pidOf(name));
  await until(async () => {
    const beats = (await (await fetch(`${httpUrl}/heartbeats`)).json()) as { name: string; pid: number; status: string }[];
    return [...expected].every(([name, pid]) => beats.some((b) => b.name === name && b.pid === pid && b.status === 'alive'));
  }, 45_000).catch(() => {
    throw new Error(`${httpUrl}/heartbeats did not list ${EXAMPLES.join(', ')} alive within 45 s`);
  });
}

async function ports(): Promise<{ port: number; port2: number }> {
  const port = await freePort();
  let port2 = await freePort();
  while (port2 === port) port2 = await freePort();
  return { port, port2 };
}

function tempDir(t: Teardown, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('pm2 start ecosystem.config.cjs with REDIS_URL: two gateways, the examples, a reload that loses nothing', async (t) => {
  const redis = await startRedis(t);
  const { port, port2 } = await ports();
  const watched = tempDir(t, 'brainstem-pm2-watched-');
  const pm = pm2(t, {
    REDIS_URL: redis.url, BRAINSTEM_PORT: String(port), BRAINSTEM_PORT_2: String(port2),
    WATCH_DIR: watched, DATA_DIR: tempDir(t, 'brainstem-pm2-data-'),
  });
  const first = `http://127.0.0.1:${port}`;
  const second = `http://127.0.0.1:${port2}`;

  await pm.cli('start', 'ecosystem.config.cjs');
  await untilHealthy(first);
  await untilHealthy(second);
  t.pass('both gateways answer GET /health 200');
  t.same((await pm.apps()).map((a) => a.name).sort(), ['brainstem', 'brainstem-2', ...EXAMPLES].sort(), 'PM2 runs the five apps');
  t.not(realpathSync(`/proc/${pm.daemonPid()}/exe`), projectNode, 'the PM2 daemon runs on the Node of PATH, not the project\'s');
  await checkRuntime(t, pm);
  await untilExamplesBeat(first, pm);
  t.pass('GET /heartbeats lists the example apps, with the pids PM2 runs them as');

  // A subscriber on the second gateway; the examples all talk to the first.
  const observer = await TestSocket.open(`ws://127.0.0.1:${port2}/bus?name=observer`);
  t.teardown(() => observer.close());
  t.match(await observer.call({ action: 'subscribe', topic: 'action.plan' }), { ok: true });
  // Barrier: the first gateway forwards action.plan to the second once it knows of that subscription.
  const prober = await TestSocket.open(`ws://127.0.0.1:${port}/bus?name=prober`);
  t.teardown(() => prober.close());
  await until(async () => {
    await prober.call({ action: 'publish', message: { type: 'action.plan', payload: { probe: true } } });
    return observer.next((f) => (f.event as BusEvent | undefined)?.type === 'action.plan', 500).then(() => true, () => false);
  }, 20_000, 'action.plan from the first gateway reaching the second');

  writeFileSync(join(watched, 'tts.py'), 'print("hello")\n');
  const plan = await observer.next((f) => {
    const event = f.event as BusEvent | undefined;
    return event?.type === 'action.plan' && (event.payload as { file?: string }).file === 'tts.py';
  }, 30_000);
  t.match(plan.event, { source: 'reasoning', payload: { file: 'tts.py', suggestion: 'run the tests that cover tts.py' } },
    'a file written in WATCH_DIR became action.plan, seen on the other gateway');

  // pm2 reload brainstem: a subscribed client comes back, and every task the gateway receipted is still there.
  const client = new BrokerClient({ url: `ws://127.0.0.1:${port}/bus`, id: 'pm2-test', reconnect: { initialDelayMs: 100, maxDelayMs: 500 } });
  t.teardown(() => client.close());
  await client.connect();
  let disconnects = 0;
  client.on('disconnected', () => { disconnects += 1; });
  const heard: BusEvent[] = [];
  await client.subscribe('pm2.after', (e) => { heard.push(e); });
  const receipted = new Set<string>();
  for (let i = 0; i < 20; i += 1) receipted.add(await client.enqueue('pm2.receipts', { i }));

  const before = await pm.pidOf('brainstem');
  let reloaded = false;
  let afterReload = 0;
  // Enqueues all through the reload; those the gateway receipted must survive, the others may have been lost with the connection.
  const producer = (async () => {
    const deadline = Date.now() + PM2_COMMAND_MS;
    for (let i = 20; !reloaded || afterReload < 5; i += 1) {
      if (Date.now() > deadline) throw new Error(`only ${afterReload} enqueues receipted after the reload`);
      try {
        receipted.add(await client.enqueue('pm2.receipts', { i }));
        if (reloaded) afterReload += 1;
      } catch {
        // Not receipted: the connection went with the old gateway. Try again shortly.
        await sleep(20);
      }
    }
  })();
  await pm.cli('reload', 'brainstem');
  reloaded = true;
  await untilHealthy(first);
  await producer;
  const after = await pm.pidOf('brainstem');
  t.not(after, before, 'pm2 reload replaced the gateway process');
  t.ok(disconnects >= 1, 'the client lost its connection with the old gateway');
  t.notOk(isRunning(before), 'the old gateway process is gone');

  const publisher = await TestSocket.open(`ws://127.0.0.1:${port}/bus?name=publisher`);
  t.teardown(() => publisher.close());
  await until(async () => {
    await publisher.call({ action: 'publish', message: { type: 'pm2.after', payload: { n: 1 } } });
    return heard.length > 0;
  }, 30_000).catch(() => { throw new Error('the subscribed client did not receive pm2.after within 30 s of the reload'); });
  t.match(heard[0], { type: 'pm2.after', source: 'publisher' }, 'the subscribed client reconnected and receives again');

  const worked = new Set<string>();
  const worker = new BrokerClient({ url: `ws://127.0.0.1:${port2}/bus`, id: 'pm2-worker' });
  t.teardown(() => worker.close());
  await worker.connect();
  worker.work('pm2.receipts', (task) => { worked.add(String(task.id)); }, { concurrency: 10 });
  await until(() => [...receipted].every((id) => worked.has(id)), 30_000).catch(() => {
    throw new Error(`receipted tasks never delivered: ${[...receipted].filter((id) => !worked.has(id)).join(', ')}`);
  });
  t.ok(receipted.size >= 25, `all ${receipted.size} receipted tasks, before, during and after the reload, were delivered`);
  await worker.close();
  await client.close();

  const pids = new Map<string, number>([['the PM2 daemon', pm.daemonPid()]]);
  for (const app of await pm.apps()) pids.set(app.name, app.pid);
  await pm.cli('kill');
  await untilGone(pids);
  t.pass('after pm2 kill no gateway, example or PM2 daemon process is left');
});

t.test('pm2 start ecosystem.config.cjs without REDIS_URL: one gateway with its embedded Redis, none left after pm2 kill', async (t) => {
  const { port, port2 } = await ports();
  const dataDir = tempDir(t, 'brainstem-pm2-data-');
  const pm = pm2(t, {
    REDIS_URL: '', BRAINSTEM_PORT: String(port), BRAINSTEM_PORT_2: String(port2),
    WATCH_DIR: tempDir(t, 'brainstem-pm2-watched-'), DATA_DIR: dataDir,
  });
  const httpUrl = `http://127.0.0.1:${port}`;

  await pm.cli('start', 'ecosystem.config.cjs');
  await untilHealthy(httpUrl);
  const health = (await (await fetch(`${httpUrl}/health`)).json()) as { dependencies: { redis: { detail: string } } };
  t.match(health.dependencies.redis.detail, join(dataDir, 'redis', 'redis.sock'), 'the gateway runs its own Redis in DATA_DIR');
  t.same((await pm.apps()).map((a) => a.name).sort(), ['brainstem', ...EXAMPLES].sort(), 'one gateway and the examples');
  await checkRuntime(t, pm);
  await untilExamplesBeat(httpUrl, pm);
  t.pass('GET /heartbeats lists the example apps');

  const pidFile = join(dataDir, 'redis', 'redis.pid');
  t.ok(existsSync(pidFile), 'the embedded redis-server wrote its pid file');
  const redisPid = Number(readFileSync(pidFile, 'utf8').trim());
  t.match(readFileSync(`/proc/${redisPid}/cmdline`, 'utf8'), /redis-server/, 'that pid is a running redis-server');

  const pids = new Map<string, number>([['embedded redis-server', redisPid], ['the PM2 daemon', pm.daemonPid()]]);
  for (const app of await pm.apps()) pids.set(app.name, app.pid);
  await pm.cli('kill');
  await untilGone(pids);
  t.pass('after pm2 kill neither the gateway nor its redis-server is left');
});
