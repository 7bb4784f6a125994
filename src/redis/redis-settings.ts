import type { Redis, RedisOptions } from 'ioredis';

/** Connection options from a redis:// or rediss:// URL. */
export function redisOptionsFromUrl(url: string): RedisOptions {
  const parsed = new URL(url);
  const options: RedisOptions = {
    host: parsed.hostname || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 6379,
  };
  if (parsed.username) options.username = decodeURIComponent(parsed.username);
  if (parsed.password) options.password = decodeURIComponent(parsed.password);
  const db = parsed.pathname.replace(/^\//, '');
  if (db) options.db = Number(db);
  if (parsed.protocol === 'rediss:') options.tls = {};
  return options;
}

/**
 * What in a Redis server's settings can lose tasks: no persistence at all,
 * or a maxmemory policy that evicts keys. Empty when the settings are safe
 * (or CONFIG is not allowed, which managed servers often refuse).
 */
export async function lossySettings(client: Redis): Promise<string[]> {
  const warnings: string[] = [];
  try {
    const [, appendonly] = (await client.config('GET', 'appendonly')) as string[];
    const [, save] = (await client.config('GET', 'save')) as string[];
    const [, policy] = (await client.config('GET', 'maxmemory-policy')) as string[];
    if (appendonly !== 'yes' && !save) warnings.push('neither AOF (appendonly) nor RDB snapshots (save) are on');
    if (policy && policy !== 'noeviction') warnings.push(`maxmemory-policy is ${policy}; use noeviction`);
  } catch {
    return warnings;
  }
  return warnings;
}
