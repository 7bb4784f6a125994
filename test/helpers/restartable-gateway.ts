import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildApp, type BrainstemApp, type BuildOptions } from '../../app.js';
import { freePort } from './ports.js';
import { startRedis, type TestRedis } from './redis.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface RestartableGateway {
  readonly app: BrainstemApp | null;
  port: number;
  httpUrl: string;
  busUrl: string;
  redis: TestRedis;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Closes the gateway (clients see 1001), waits `downMs`, starts it again on the same port and Redis. */
  restart(downMs?: number): Promise<void>;
}

/**
 * A gateway on a fixed port over its own real redis-server, so that a test
 * can restart it under connected clients the way a deploy does.
 */
export async function startRestartableGateway(t: Teardown, options: BuildOptions = {}): Promise<RestartableGateway> {
  // Redis must outlive the gateway at teardown (app.close() quits its connections).
  const redisTeardowns: (() => unknown)[] = [];
  const redis = await startRedis({ teardown: (fn) => redisTeardowns.push(fn) });
  const dataDir = mkdtempSync(join(tmpdir(), 'brainstem-rgw-'));
  const port = await freePort();
  let app: BrainstemApp | null = null;

  async function start(): Promise<void> {
    const next = await buildApp({ logger: false, ...options, redisUrl: redis.url, dataDir });
    await next.listen({ port, host: '127.0.0.1' });
    app = next;
  }
  async function stop(): Promise<void> {
    const running = app;
    app = null;
    await running?.close();
  }
  t.teardown(async () => {
    await stop();
    for (const fn of redisTeardowns) await fn();
    rmSync(dataDir, { recursive: true, force: true });
  });
  await start();
  return {
    get app() {
      return app;
    },
    port,
    httpUrl: `http://127.0.0.1:${port}`,
    busUrl: `ws://127.0.0.1:${port}/bus`,
    redis,
    stop,
    start,
    async restart(downMs = 0) {
      await stop();
      if (downMs > 0) await sleep(downMs);
      await start();
    },
  };
}
