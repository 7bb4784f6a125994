import type { AddressInfo } from 'node:net';
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

/** Builds and listens on a free loopback port; closed when the test ends. */
export async function startGateway(t: Teardown, options: BuildOptions = {}): Promise<RunningGateway> {
  const app = await buildApp({ logger: false, ...options });
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  const { port } = app.server.address() as AddressInfo;
  return { app, port, httpUrl: `http://127.0.0.1:${port}`, busUrl: `ws://127.0.0.1:${port}/bus` };
}
