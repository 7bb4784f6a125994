import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './free-port.js';

/** The brokers a scenario compares, each run in its own process. */
export type ServerKind = 'brainstem' | 'previous' | 'nats' | 'seed' | 'wire';

export const SERVER_LABELS: Record<ServerKind, string> = {
  brainstem: 'brainstem',
  previous: 'brainstem, previous build',
  nats: 'nats-server',
  seed: 'seed ws broker',
  wire: 'wire limit',
};

/** A gateway speaks the bus protocol (it greets with `welcome`): this build or another one (`previous`). */
export function isGateway(kind: ServerKind): boolean {
  return kind === 'brainstem' || kind === 'previous';
}

/**
 * Debian's nats-server, or NATS_SERVER when set (only that one: set it to
 * a path that does not exist to see the bench skip it). A baseline the
 * bench skips, visibly, when it is missing.
 */
export function natsServerPath(): string | null {
  const explicit = process.env.NATS_SERVER;
  const candidates = explicit !== undefined ? [explicit] : ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'];
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not this one
    }
  }
  return null;
}

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** The V8 options `npm start` and PM2 give the gateway (package.json, config.nodeOptions). */
const gatewayNodeOptions = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { config: { nodeOptions: string } })
  .config.nodeOptions.split(' ');

export const paths = {
  repoRoot,
  gateway: join(repoRoot, 'dist/server.js'),
  seedBroker: join(repoRoot, 'bench/baselines/seed-broker.js'),
  wireLimit: join(repoRoot, 'dist/bench/baselines/wire-limit.js'),
};

async function waitForPort(port: number, child: ChildProcess, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode} before listening`);
    const open = await new Promise<boolean>((resolve) => {
      const probe = connect(port, '127.0.0.1');
      probe.once('connect', () => { probe.destroy(); resolve(true); });
      probe.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Resident set size of a process, in bytes (Linux /proc). */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!match) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]) * 1024;
}

/** CPU seconds (user + system) a process has used so far (Linux /proc). */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may hold spaces: utime is the 14th field, stime the 15th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export interface RunningServer {
  kind: ServerKind;
  pid: number;
  port: number;
  url: string;
  rss(): number;
  cpuSeconds(): number;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Redis for the gateway (it then runs no embedded redis-server). */
  redisUrl: string;
  /** Extra environment for the gateway (e.g. BUS_MAX_BACKLOG_BYTES). */
  env?: Record<string, string>;
  /** Extra Node options for the gateway (`--node-args`), for experiments. */
  nodeArgs?: string[];
  /** Write a V8 CPU profile of the server into this folder. */
  cpuProfileDir?: string;
  /** Where the server's stdout/stderr go (default: discarded). */
  logFile?: string;
  /** `previous` only: the server.js of another build, run like this one (an A/B of a lever in one run). */
  previousGateway?: string;
  /** nats-server only: JetStream on, stored in the server's temp folder. */
  jetStream?: boolean;
}

/**
 * The gateway exactly as `npm start` runs it (its Node options too), configured for the bench:
 * no per-connection frame rate limit (BUS_MAX_FRAMES_PER_SECOND=0: the
 * publisher sends far more than the default 100,000 frames/s allows in
 * bursts), no cap on connections per client (BUS_MAX_CONNECTIONS_PER_CLIENT=0:
 * S3 opens thousands from one address), LOG_LEVEL=info (connects and disconnects logged), the bench's
 * Redis. Baselines get only PORT.
 */
export function gatewayEnv(port: number, dataDir: string, options: StartOptions): Record<string, string> {
  return {
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    BUS_MAX_FRAMES_PER_SECOND: '0',
    BUS_MAX_CONNECTIONS_PER_CLIENT: '0',
    REDIS_URL: options.redisUrl,
    DATA_DIR: dataDir,
    ...options.env,
  };
}

export async function startServer(kind: ServerKind, options: StartOptions): Promise<RunningServer> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'brainstem-bench-'));
  const nodeArgs = options.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir] : [];
  if (isGateway(kind) && options.nodeArgs) nodeArgs.push(...options.nodeArgs);
  let command = process.execPath;
  let commandArgs: string[];
  let env: Record<string, string>;
  if (kind === 'nats') {
    const nats = natsServerPath();
    if (!nats) throw new Error('nats-server is not installed');
    command = nats;
    commandArgs = ['-a', '127.0.0.1', '-p', String(port), ...(options.jetStream ? ['-js', '-sd', dataDir] : [])];
    env = {};
  } else if (isGateway(kind)) {
    if (kind === 'previous' && !options.previousGateway) throw new Error('the previous build needs --previous-gateway FILE');
    // The options of npm start first, so that the experiment's (`--node-args`) win where they differ.
    commandArgs = [...gatewayNodeOptions, ...nodeArgs, kind === 'previous' ? options.previousGateway as string : paths.gateway];
    env = gatewayEnv(port, dataDir, options);
  } else {
    commandArgs = [...nodeArgs, kind === 'seed' ? paths.seedBroker : paths.wireLimit];
    env = { PORT: String(port) };
  }
  const out = options.logFile ? createWriteStream(options.logFile, { flags: 'a' }) : null;
  if (out) await once(out, 'open');
  const child = spawn(command, commandArgs, {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', out ?? 'ignore', out ?? 'ignore'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${kind}`);
  try {
    await waitForPort(port, child, SERVER_LABELS[kind]);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    kind,
    pid,
    port,
    url: isGateway(kind) ? `ws://127.0.0.1:${port}/bus?name=bench`
      : kind === 'nats' ? `nats://127.0.0.1:${port}` : `ws://127.0.0.1:${port}`,
    rss: () => rssOf(pid),
    cpuSeconds: () => cpuSecondsOf(pid),
    async stop() {
      if (child.exitCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      out?.end();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface BenchRedis {
  url: string;
  /** CPU seconds the redis-server has used so far. */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

/** A redis-server as the gateway's docs ask for queues: AOF everysec, noeviction. */
export async function startBenchRedis(): Promise<BenchRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'brainstem-bench-redis-'));
  const child = spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--appendonly', 'yes', '--appendfsync', 'everysec', '--maxmemory-policy', 'noeviction',
    '--save', '', '--loglevel', 'warning',
  ], { stdio: 'ignore' });
  await waitForPort(port, child, 'redis-server');
  const pid = child.pid as number;
  return {
    url: `redis://127.0.0.1:${port}`,
    cpuSeconds: () => cpuSecondsOf(pid),
    async stop() {
      if (child.exitCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
