import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp, type BuildOptions, type BrainstemApp } from '../../app.js';

export interface RunningGateway {
  app: BrainstemApp;
  port: number;
  httpUrl: string;
  busUrl: string;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

/**
 * Builds and listens on a free loopback port; closed when the test ends.
 * Without `redisUrl` it runs its own embedded redis-server in a temp folder.
 */
export async function startGateway(t: Teardown, options: BuildOptions = {}): Promise<RunningGateway> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'brainstem-gw-'));
  const app = await buildApp({ logger: false, ...options, dataDir });
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(async () => {
    await app.close();
    if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
  });
  const { port } = app.server.address() as AddressInfo;
  return { app, port, httpUrl: `http://127.0.0.1:${port}`, busUrl: `ws://127.0.0.1:${port}/bus` };
}
