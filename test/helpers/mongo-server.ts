import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MongoClient } from 'mongodb';
import { freePort } from './ports.js';

/** Built by scripts/ferretdb.sh. */
export const ferretdbBinary = fileURLToPath(new URL('../../var/tools/ferretdb', import.meta.url));

export interface TestMongo {
  url: string;
  /** A server this helper runs (FerretDB), which a test may stop and start; false for MONGO_URL's. */
  owned: boolean;
}

export interface TestFerretDB extends TestMongo {
  owned: true;
  port: number;
  /** Starts the server on its port and data folder; resolves once it answers. */
  start(): Promise<void>;
  /** Stops it (SIGTERM, or SIGKILL: a crash); the data stays for the next start. */
  stop(kill9?: boolean): Promise<void>;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Servers still running when a test file is cut short (a tap timeout sends SIGTERM): killed on the way out. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});
process.once('SIGTERM', () => process.exit(143));

/** Resolves once a server on `url` answers a ping; rejects when `exited` resolves first or the time is up. */
async function untilAnswers(url: string, exited: Promise<unknown>, timeoutMs = 30_000): Promise<void> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const probe = new MongoClient(url, { serverSelectionTimeoutMS: 250, connectTimeoutMS: 250 });
    try {
      await probe.db('admin').command({ ping: 1 });
      return;
    } catch (err) {
      if (gone) throw new Error('ferretdb exited before it answered');
      if (Date.now() > deadline) throw new Error(`ferretdb did not answer within ${timeoutMs} ms: ${(err as Error).message}`);
    } finally {
      await probe.close();
    }
  }
}

/**
 * A FerretDB (MongoDB's wire protocol on SQLite) on a free loopback port
 * and a temp data folder, not yet started; stopped and removed at teardown.
 */
export async function createFerretDB(t: Teardown): Promise<TestFerretDB> {
  if (!existsSync(ferretdbBinary)) throw new Error(`${ferretdbBinary} is missing: run bash scripts/ferretdb.sh`);
  const dir = mkdtempSync(join(tmpdir(), 'brainstem-ferretdb-'));
  const port = await freePort();
  const url = `mongodb://127.0.0.1:${port}/`;
  let child: ChildProcess | null = null;
  let output = '';

  async function start(): Promise<void> {
    if (child) return;
    output = '';
    const started = spawn(ferretdbBinary, [
      '--handler=sqlite', `--sqlite-url=file:${dir}/`, `--listen-addr=127.0.0.1:${port}`,
      // Its state file beside the data; no debug listener (a fixed port two servers would share); no reports home.
      `--state-dir=${dir}`, '--debug-addr=-', '--telemetry=disable', '--log-level=warn',
    ], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DO_NOT_TRACK: '1' } });
    started.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      output = (output + chunk).slice(-4000);
    });
    child = started;
    running.add(started);
    const exited = once(started, 'exit').then(() => running.delete(started));
    try {
      await untilAnswers(url, exited);
    } catch (err) {
      await stop();
      throw new Error(`${(err as Error).message}\n${output}`);
    }
  }

  async function stop(kill9 = false): Promise<void> {
    const stopping = child;
    child = null;
    if (!stopping || stopping.exitCode !== null || stopping.signalCode !== null) return;
    const exited = once(stopping, 'exit');
    stopping.kill(kill9 ? 'SIGKILL' : 'SIGTERM');
    await exited;
  }

  t.teardown(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { url, owned: true, port, start, stop };
}

/** A running FerretDB, as createFerretDB makes it. */
export async function startFerretDB(t: Teardown): Promise<TestFerretDB> {
  const server = await createFerretDB(t);
  await server.start();
  return server;
}

/**
 * The MongoDB server the tests use: MONGO_URL's (a real mongod) when it is
 * set, else a FerretDB of this test's own.
 */
export async function startMongo(t: Teardown): Promise<TestMongo> {
  const external = process.env.MONGO_URL;
  if (external) return { url: external, owned: false };
  return startFerretDB(t);
}
