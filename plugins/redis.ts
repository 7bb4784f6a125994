import { join } from 'node:path';
import fp from 'fastify-plugin';
import type { Redis, RedisOptions } from 'ioredis';
import { RedisSupervisor } from '../src/redis/redis-supervisor.js';
import { maskUrlCredentials } from '../src/redaction.js';
import { lossySettings, redisOptionsFromUrl } from '../src/redis/redis-settings.js';
import { TickBatchedRedis } from '../src/redis/tick-batched-redis.js';
import { TickWriteBatch } from '../src/streams/tick-write-batch.js';

export type ConnectionPurpose = 'queue' | 'worker' | 'subscriber';

export interface RedisHandle {
  /** Where Redis is, for people (credentials masked): a redis:// URL or unix:// socket path. */
  url: string;
  /** Base connection options (host/port or socket path, credentials). */
  options: RedisOptions;
  /** A shared command connection that fails fast while Redis is down. */
  client: Redis;
  /**
   * A new connection for one purpose, closed by `app.close()`: queue
   * connections fail fast (an enqueue while Redis is down errors instead of
   * waiting); worker and subscriber connections retry forever, as BullMQ's
   * blocking commands and pub/sub need.
   */
  createConnection(purpose: ConnectionPurpose): Redis;
  /** The embedded redis-server, when REDIS_URL is unset. */
  supervisor: RedisSupervisor | null;
  isReady(): boolean;
}

declare module 'fastify' {
  interface FastifyInstance {
    redis: RedisHandle;
  }
}

const CONNECT_WAIT_MS = 3000;

/**
 * Redis for the organs that persist (queues, heartbeat records): the
 * server at REDIS_URL, or an embedded redis-server the gateway supervises.
 */
export default fp(async function redisPlugin(app) {
  const { config } = app;
  let supervisor: RedisSupervisor | null = null;
  let base: RedisOptions;
  let url: string;
  if (config.redisUrl) {
    base = redisOptionsFromUrl(config.redisUrl);
    url = maskUrlCredentials(config.redisUrl);
  } else {
    supervisor = new RedisSupervisor({ bin: config.redisServerBin, dir: join(config.dataDir, 'redis'), log: app.log });
    await supervisor.start();
    base = { path: supervisor.socketPath };
    url = `unix://${supervisor.socketPath}`;
  }

  const connections = new Set<Redis>();
  const writes = new TickWriteBatch();
  function createConnection(purpose: ConnectionPurpose): Redis {
    const failFast = purpose === 'queue';
    const connection = new TickBatchedRedis({
      ...base,
      connectionName: `brainstem:${purpose}`,
      enableOfflineQueue: !failFast,
      maxRetriesPerRequest: failFast ? 1 : null,
      retryStrategy: (times) => Math.min(times * 100, 2000),
    }, writes);
    connection.on('error', () => {
      // Reported once per outage by the shared client below.
    });
    connections.add(connection);
    connection.once('end', () => connections.delete(connection));
    return connection;
  }

  const client = createConnection('queue');
  let down = false;
  client.on('error', (err: Error) => {
    if (down) return;
    down = true;
    app.log.warn({ err: err.message, url }, 'redis is unreachable: queues answer UNAVAILABLE until it is back');
  });
  client.on('ready', () => {
    if (down) app.log.info({ url }, 'redis is back');
    down = false;
  });

  const ready = await Promise.race([
    new Promise<boolean>((r) => client.once('ready', () => r(true))),
    new Promise<boolean>((r) => setTimeout(() => r(false), CONNECT_WAIT_MS).unref()),
  ]);
  if (!ready) app.log.warn({ url }, 'redis did not answer at start: the gateway runs, queues wait for it');
  else if (config.redisUrl) {
    for (const warning of await lossySettings(client)) app.log.warn({ url }, `redis can lose tasks: ${warning}`);
  }

  app.decorate('redis', {
    url,
    options: base,
    client,
    createConnection,
    supervisor,
    isReady: () => client.status === 'ready',
  });

  app.health.register('redis', async () => {
    if (client.status !== 'ready') return { ok: false, detail: `redis ${client.status}` };
    await client.ping();
    return { ok: true, detail: url };
  });

  app.addHook('onClose', async () => {
    await Promise.all([...connections].map(async (connection) => {
      try {
        await connection.quit();
      } catch {
        connection.disconnect();
      }
    }));
    await supervisor?.stop();
  });
}, { name: 'brainstem-redis' });
