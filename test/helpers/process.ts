import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.js';
import { until } from './test-socket.js';

/** The built gateway entry (`npm test` builds before it runs the tests). */
export const serverEntry = fileURLToPath(new URL('../../dist/server.js', import.meta.url));

/** Waits until a gateway process answers 200 on /health; generous, as a loaded machine takes seconds to start Node. */
export async function untilHealthy(httpUrl: string, timeoutMs = 45_000): Promise<void> {
  const healthy = async () => {
    try {
      return (await fetch(`${httpUrl}/health`)).status === 200;
    } catch {
      return false; // not listening yet
    }
  };
  await until(healthy, timeoutMs).catch(() => {
    throw new Error(`${httpUrl} not healthy within ${timeoutMs} ms`);
  });
}

export interface GatewayProcess {
  child: ChildProcess;
  port: number;
  httpUrl: string;
  busUrl: string;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

/**
 * Gateways still running when a test file is cut short (a tap timeout sends
 * SIGTERM, and teardowns do not run then): killed on the way out, so none
 * outlives the test.
 */
const children = new Set<ChildProcess>();
function killChildren(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}
process.once('exit', killChildren);
process.once('SIGTERM', () => {
  killChildren();
  process.exit(143);
});

/**
 * A real gateway process (`node dist/server.js`) on `redisUrl`, healthy when
 * it resolves; SIGKILLed and its data folder removed at teardown.
 */
export async function spawnGatewayProcess(t: Teardown, redisUrl: string, env: Record<string, string> = {}): Promise<GatewayProcess> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'brainstem-gw-process-'));
  const child = spawn(process.execPath, [serverEntry], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'warn', REDIS_URL: redisUrl, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.add(child);
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  });
  const httpUrl = `http://127.0.0.1:${port}`;
  await untilHealthy(httpUrl);
  return { child, port, httpUrl, busUrl: `ws://127.0.0.1:${port}/bus` };
}

/** Whether a process of that pid exists (signal 0 checks without sending). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
