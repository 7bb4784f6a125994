import { fileURLToPath } from 'node:url';

/** The built gateway entry (`npm test` builds before it runs the tests). */
export const serverEntry = fileURLToPath(new URL('../../dist/server.js', import.meta.url));

/** Waits until a gateway process answers 200 on /health; generous, as a loaded machine takes seconds to start Node. */
export async function untilHealthy(httpUrl: string, timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(`${httpUrl}/health`)).status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${httpUrl} not healthy within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
