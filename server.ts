import { buildApp, type BrainstemApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './src/config.js';

/**
 * The gateway process: reads its settings, listens, and closes everything
 * on SIGINT/SIGTERM. A bad setting stops it with one readable line.
 */
export async function startGateway(env: Record<string, string | undefined> = process.env) {
  let config: Config;
  let app: BrainstemApp;
  try {
    config = loadConfig(env);
    // buildApp also checks the edge config file and the bind address.
    app = await buildApp(config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`brainstem: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    app.log.info({ signal }, 'shutting down');
    app.close().then(() => process.exit(0), (err: unknown) => {
      app.log.error({ err }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  await app.listen({ port: config.port, host: config.host });
  return app;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  startGateway().catch((err: unknown) => {
    process.stderr.write(`brainstem: failed to start: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
