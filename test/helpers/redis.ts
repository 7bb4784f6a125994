import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './ports.js';

export interface TestRedis {
  url: string;
  port: number;
  dir: string;
  /** Stops the server: SIGTERM (persisting) unless `kill9`. */
  stop(kill9?: boolean): Promise<void>;
  /** Starts it again on the same port and data folder. */
  restart(): Promise<void>;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A real redis-server on a free loopback port and a temp data folder. */
export async function startRedis(t: Teardown, options: { appendonly?: boolean; password?: string } = {}): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'brainstem-redis-'));
  const port = await freePort();
  let child: ChildProcess | null = null;

  async function launch(): Promise<void> {
    child = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
      '--appendonly', options.appendonly === false ? 'no' : 'yes', '--appendfsync', 'everysec',
      '--maxmemory-policy', 'noeviction', '--save', '', '--loglevel', 'warning',
      ...(options.password === undefined ? [] : ['--requirepass', options.password]),
    ], { stdio: 'ignore' });
    const probe = new Redis({
      port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => 20, maxRetriesPerRequest: null,
      ...(options.password === undefined ? {} : { password: options.password }),
    });
    probe.on('error', () => {});
    await probe.connect().catch(() => {});
    await probe.ping();
    probe.disconnect();
  }

  async function stop(kill9 = false): Promise<void> {
    const running = child;
    child = null;
    if (!running || running.exitCode !== null) return;
    const exited = once(running, 'exit');
    running.kill(kill9 ? 'SIGKILL' : 'SIGTERM');
    await exited;
  }

  await launch();
  t.teardown(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const credentials = options.password === undefined ? '' : `:${encodeURIComponent(options.password)}@`;
  return { url: `redis://${credentials}127.0.0.1:${port}`, port, dir, stop, restart: launch };
}
