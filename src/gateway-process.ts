import { buildApp, type BrainstemApp } from '../app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { EvictionGc } from './eviction-gc.js';
import { YoungGenerationTrim } from './young-generation-trim.js';

/**
 * How long a close may take before the embedded Redis is stopped directly;
 * with its flush (redis-supervisor's STOP_TIMEOUT_MS) it stays under
 * ecosystem.config.cjs's kill_timeout.
 */
export const CLOSE_DEADLINE_MS = 10_000;

/**
 * The gateway process: reads its settings, listens, and closes everything
 * on SIGINT/SIGTERM. A bad setting stops it with one readable line.
 *
 * It lives apart from the entry (server.ts) so that `brainstem start` and
 * tests can import it without starting anything, and the entry can start
 * the gateway unconditionally: under PM2, `process.argv[1]` is PM2's own
 * container script, so a main-module check there never starts it.
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
    // A close that hangs must not end in the supervisor's SIGKILL (PM2's
    // kill_timeout), which would leave the embedded redis-server orphaned:
    // stop it directly, then leave.
    setTimeout(() => {
      app.log.error({ signal, deadlineMs: CLOSE_DEADLINE_MS }, 'close still running: stopping the embedded redis-server and exiting');
      void (app.redis.supervisor?.stop() ?? Promise.resolve()).finally(() => process.exit(1));
    }, CLOSE_DEADLINE_MS).unref();
    app.close().then(() => process.exit(0), (err: unknown) => {
      app.log.error({ err }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  // Start-up grew V8's young generation; so will each wave of connections.
  const trim = new YoungGenerationTrim();
  const evictionGc = new EvictionGc({ live: () => app.queues.liveQueueCount });
  app.addHook('onClose', async () => {
    trim.stop();
    evictionGc.stop();
  });
  await app.listen({ port: config.port, host: config.host });
  trim.start();
  evictionGc.start();
  // PM2's `wait_ready`: the process counts as up once it listens, not once it is spawned.
  process.send?.('ready');
  return app;
}
