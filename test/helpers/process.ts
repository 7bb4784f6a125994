import { fileURLToPath } from 'node:url';
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
