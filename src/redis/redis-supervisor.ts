import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { lockDataDir, type DataDirLock } from './data-dir-lock.js';

export interface RedisSupervisorOptions {
  /** The redis-server binary. */
  bin: string;
  /** Data folder: the append-only file, the RDB and the unix socket live here. */
  dir: string;
  log: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
  /** Delay before restarting a redis-server that died (doubles up to 5 s). */
  restartDelayMs?: number;
}

/** Thrown when there is no redis-server to run: the message says how to get one. */
export class RedisUnavailableError extends Error {}

const READY_TIMEOUT_MS = 10_000;
/** How long redis-server may take to flush and exit before it is killed (ecosystem.config.cjs's kill_timeout allows for it). */
export const STOP_TIMEOUT_MS = 10_000;

/** Resolves once something answers on the unix socket, false if nothing does. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.end('PING\r\n');
      resolvePromise(true);
    });
    socket.once('error', () => resolvePromise(false));
  });
}

/** Sends one inline command and waits for the server to close or answer. */
function sendCommand(path: string, command: string): Promise<void> {
  return new Promise((resolvePromise) => {
    const socket = connect(path);
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.once('data', () => socket.end());
    socket.once('close', () => resolvePromise());
    socket.once('error', () => resolvePromise());
  });
}

/**
 * Runs the gateway's own redis-server when no REDIS_URL is given: durable
 * settings (AOF with fsync every second, no eviction), reachable only
 * through a unix socket in its data folder, restarted if it dies, stopped
 * with the gateway.
 */
export class RedisSupervisor {
  readonly dir: string;
  readonly socketPath: string;
  private child: ChildProcess | null = null;
  private lock: DataDirLock | null = null;
  private stopping = false;
  private restartDelayMs: number;

  constructor(private readonly options: RedisSupervisorOptions) {
    this.dir = resolve(options.dir);
    this.socketPath = join(this.dir, 'redis.sock');
    this.restartDelayMs = options.restartDelayMs ?? 200;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    // Before anything touches the folder: a second gateway here is refused, not let to shut down the first one's Redis.
    this.lock = await lockDataDir(this.dir);
    try {
      await this.shutdownOrphan();
      await this.spawnServer();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      // SIGTERM makes redis-server flush its append-only file before it exits.
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    // Only once its redis-server is gone may another gateway take the folder.
    await this.lock?.release();
    this.lock = null;
  }

  /**
   * A gateway killed with -9 leaves its redis-server running on the socket.
   * Ask it to shut down (it persists first) so this gateway owns its Redis.
   */
  private async shutdownOrphan(): Promise<void> {
    if (!existsSync(this.socketPath) || !(await socketAnswers(this.socketPath))) return;
    const pidFile = join(this.dir, 'redis.pid');
    const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : NaN;
    this.options.log.warn({ socket: this.socketPath, pid }, 'a redis-server from an earlier run is still up: shutting it down');
    await sendCommand(this.socketPath, 'SHUTDOWN');
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline && (await socketAnswers(this.socketPath))) await delay(50);
  }

  private spawnServer(): Promise<void> {
    const args = [
      '--port', '0',
      '--unixsocket', this.socketPath,
      '--unixsocketperm', '700',
      '--dir', this.dir,
      '--pidfile', join(this.dir, 'redis.pid'),
      '--appendonly', 'yes',
      '--appendfsync', 'everysec',
      '--maxmemory-policy', 'noeviction',
      '--daemonize', 'no',
      '--save', '900 1 300 10 60 10000',
      '--loglevel', 'warning',
    ];
    return new Promise((resolvePromise, reject) => {
      let child: ChildProcess;
      try {
        // Its own process group: a Ctrl-C meant for the gateway must not kill
        // Redis under it; the gateway stops it in order on close.
        child = spawn(this.options.bin, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
      } catch (err) {
        reject(err);
        return;
      }
      this.child = child;
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr = (stderr + chunk.toString()).slice(-2000);
      });
      child.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') {
          reject(new RedisUnavailableError(
            `${this.options.bin} not found: install it (sudo apt-get install -y redis-server) or set REDIS_URL to a Redis server`,
          ));
        } else reject(err);
      });
      child.once('exit', (code, signal) => {
        if (this.child === child) this.child = null;
        if (this.stopping) return;
        this.options.log.error({ code, signal, stderr: stderr.trim() }, 'embedded redis-server exited: restarting it');
        void this.restartLater();
      });
      child.once('spawn', () => {
        void this.waitReady(child).then(resolvePromise, reject);
      });
    });
  }

  private async waitReady(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error('redis-server exited during start');
      if (await socketAnswers(this.socketPath)) {
        this.options.log.info({ pid: child.pid, socket: this.socketPath }, 'embedded redis-server ready');
        return;
      }
      await delay(20);
    }
    throw new Error(`redis-server did not answer on ${this.socketPath} within ${READY_TIMEOUT_MS} ms`);
  }

  private async restartLater(): Promise<void> {
    await delay(this.restartDelayMs);
    this.restartDelayMs = Math.min(this.restartDelayMs * 2, 5000);
    if (this.stopping) return;
    try {
      await this.spawnServer();
      this.restartDelayMs = this.options.restartDelayMs ?? 200;
    } catch (err) {
      this.options.log.error({ err }, 'embedded redis-server failed to restart');
      if (!this.stopping) void this.restartLater();
    }
  }
}
