import { parseRetentionRules, type RetentionRule } from './bus/history/retention-rules.js';
import { parseQueueOverrides, type QueueOverrides } from './queues/task-options.js';
import { maskUrlCredentials } from './redaction.js';

/**
 * The gateway's settings: one table, read from the environment and
 * validated at start. A bad value stops the start with one readable line.
 */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

interface Setting<T> {
  env: string;
  default: T;
  parse(raw: string): T;
  doc: string;
}

function integer(min: number, max: number): (raw: string) => number {
  return (raw) => {
    if (!/^-?\d+$/.test(raw.trim())) throw new Error(`expected a whole number from ${min} to ${max}`);
    const value = Number(raw);
    if (value < min || value > max) throw new Error(`expected a whole number from ${min} to ${max}`);
    return value;
  };
}

function oneOf<const T extends string>(choices: readonly T[]): (raw: string) => T {
  return (raw) => {
    if (!(choices as readonly string[]).includes(raw)) throw new Error(`expected one of ${choices.join(', ')}`);
    return raw as T;
  };
}

function boolean(raw: string): boolean {
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new Error('expected true or false');
}

function text(raw: string): string {
  if (raw.trim() === '') throw new Error('expected a non-empty value');
  return raw;
}

function optionalText(raw: string): string | null {
  return raw.trim() === '' ? null : raw;
}

function url(protocols: string[]): (raw: string) => string | null {
  return (raw) => {
    if (raw.trim() === '') return null;
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      throw new Error(`expected a URL (${protocols.join(' or ')})`);
    }
    if (!protocols.includes(parsed.protocol)) throw new Error(`expected a URL (${protocols.join(' or ')})`);
    return raw;
  };
}

const MiB = 1024 * 1024;

export const SETTINGS = {
  port: { env: 'PORT', default: 8080, parse: integer(0, 65535), doc: 'TCP port of the gateway' },
  host: { env: 'HOST', default: '127.0.0.1', parse: text, doc: 'address to bind' },
  logLevel: {
    env: 'LOG_LEVEL',
    default: 'info' as 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent',
    parse: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const),
    doc: 'pino log level; debug shows every subscribe and publish',
  },
  busMaxFrameBytes: {
    env: 'BUS_MAX_FRAME_BYTES', default: 1 * MiB, parse: integer(1024, 256 * MiB),
    doc: 'largest frame a client may send; a larger one closes it with 1009',
  },
  busMaxBacklogBytes: {
    env: 'BUS_MAX_BACKLOG_BYTES', default: 8 * MiB, parse: integer(64 * 1024, 1024 * MiB),
    doc: 'unsent bytes a subscriber may owe before it is closed with 1008 slow consumer',
  },
  busPingIntervalMs: {
    env: 'BUS_PING_INTERVAL_MS', default: 30_000, parse: integer(100, 3_600_000),
    doc: 'WebSocket ping interval; a peer silent for two intervals is dropped',
  },
  busMaxFramesPerSecond: {
    env: 'BUS_MAX_FRAMES_PER_SECOND', default: 100_000, parse: integer(0, 10_000_000),
    doc: 'frames a connection may send per second (0: no limit); over it RATE_LIMITED, then 1008',
  },
  busMaxSubscriptions: {
    env: 'BUS_MAX_SUBSCRIPTIONS', default: 10_000, parse: integer(1, 10_000_000),
    doc: 'patterns one connection may subscribe to; one more is refused with RATE_LIMITED',
  },
  busMaxPatternBytes: {
    env: 'BUS_MAX_PATTERN_BYTES', default: 256 * 1024, parse: integer(1024, 256 * MiB),
    doc: 'total size (UTF-8 bytes) of the patterns one connection may subscribe to; past it a subscribe is refused with RATE_LIMITED',
  },
  busMaxConnectionsPerClient: {
    env: 'BUS_MAX_CONNECTIONS_PER_CLIENT', default: 256, parse: integer(0, 10_000_000),
    doc: 'WebSocket connections (bus, heartbeat, proxied) one client address, and one token, may hold open (0: no limit; loopback counts too); past it the upgrade gets 429 RATE_LIMITED',
  },
  busCluster: {
    env: 'BUS_CLUSTER', default: true, parse: boolean,
    doc: 'with REDIS_URL set, gateways on the same Redis share one bus (events cross Redis only where subscribed)',
  },
  busClusterChannel: {
    env: 'BUS_CLUSTER_CHANNEL', default: 'brainstem:bus', parse: text,
    doc: 'prefix of the Redis pub/sub channels of the shared bus; one per cluster',
  },
  busClusterHeartbeatMs: {
    env: 'BUS_CLUSTER_HEARTBEAT_MS', default: 1000, parse: integer(50, 60_000),
    doc: 'how often each gateway tells the others it is alive; silent for 3.5 beats, it is forgotten',
  },
  busHistory: {
    env: 'BUS_HISTORY', default: null as RetentionRule[] | null, parse: parseRetentionRules,
    doc: 'retained topics as JSON, e.g. [{"topics":"queue.>","maxEvents":10000,"maxAgeSeconds":86400}]; replaces the config file\'s "history"; [] retains nothing; unset: the file\'s, else queue.> and _inbox.>',
  },
  queueAttempts: {
    env: 'QUEUE_ATTEMPTS', default: 5, parse: integer(1, 1000),
    doc: 'deliveries a task gets before it goes to the dead letters (per task: opts.attempts)',
  },
  queueBackoffType: {
    env: 'QUEUE_BACKOFF_TYPE', default: 'exponential' as 'exponential' | 'fixed',
    parse: oneOf(['exponential', 'fixed'] as const),
    doc: 'delay before a failed task is retried: exponential (doubling) or fixed (per task: opts.backoff)',
  },
  queueBackoffMs: {
    env: 'QUEUE_BACKOFF_MS', default: 1000, parse: integer(0, 86_400_000),
    doc: 'first retry delay of a failed task',
  },
  queueOverrides: {
    env: 'QUEUE_OVERRIDES', default: {} as QueueOverrides, parse: parseQueueOverrides,
    doc: 'per-queue attempts/backoff as JSON, e.g. {"agent.think":{"attempts":3,"backoff":{"type":"fixed","delay":500}}}',
  },
  queueLeaseMs: {
    env: 'QUEUE_LEASE_MS', default: 30_000, parse: integer(500, 3_600_000),
    doc: 'lock on a delivered task, renewed while its worker is connected; after a gateway crash it returns once this expires',
  },
  queueStalledCheckMs: {
    env: 'QUEUE_STALLED_CHECK_MS', default: 15_000, parse: integer(100, 3_600_000),
    doc: 'how often expired leases (a crashed gateway) are looked for and their tasks returned',
  },
  queueIdleMs: {
    env: 'QUEUE_IDLE_MS', default: 300_000, parse: integer(100, 86_400_000),
    doc: 'a queue with no waiting pull, no task held and no use for this long drops its runtime and memory; its next use brings it back',
  },
  queueMaxLive: {
    env: 'QUEUE_MAX_LIVE', default: 10_000, parse: integer(1, 10_000_000),
    doc: 'queues this gateway keeps live at once; past it a new queue name is refused with TOO_MANY_QUEUES',
  },
  queueMaxPerConnection: {
    env: 'QUEUE_MAX_PER_CONNECTION', default: 1000, parse: integer(1, 10_000_000),
    doc: 'distinct queue names one /bus connection may enqueue on or pull from; past it TOO_MANY_QUEUES',
  },
  queueKeepCompleted: {
    env: 'QUEUE_KEEP_COMPLETED', default: 1000, parse: integer(0, 10_000_000),
    doc: 'completed tasks kept per queue for inspection (failed ones are kept until retried or removed)',
  },
  queueStoreTimeoutMs: {
    env: 'QUEUE_STORE_TIMEOUT_MS', default: 5000, parse: integer(100, 600_000),
    doc: 'how long an enqueue waits for Redis before it answers UNAVAILABLE',
  },
  streamWindow: {
    env: 'STREAM_WINDOW', default: 256, parse: integer(1, 1_000_000),
    doc: 'chunks of a streamed task not yet read by its slowest follower (on this gateway) before its worker\'s receipts are held back',
  },
  streamWindowBytes: {
    env: 'STREAM_WINDOW_BYTES', default: 4 * MiB, parse: integer(1024, 1024 * MiB),
    doc: 'bytes of a streamed task not yet read by its slowest follower (on this gateway) before its worker\'s receipts are held back',
  },
  streamMaxChunks: {
    env: 'STREAM_MAX_CHUNKS', default: 100_000, parse: integer(1, 10_000_000),
    doc: 'chunks one streamed task may write (all attempts); past it a chunk is refused with TOO_LARGE',
  },
  streamMaxBytes: {
    env: 'STREAM_MAX_BYTES', default: MiB, parse: integer(1, 64 * MiB),
    doc: 'bytes of one chunk (JSON text, or the raw bytes of a binary one); over it the chunk is refused with TOO_LARGE',
  },
  streamKeepMs: {
    env: 'STREAM_KEEP_MS', default: 600_000, parse: integer(1000, 30 * 86_400_000),
    doc: 'how long a task\'s stream is kept after its end, for followers that resume late',
  },
  queuePrefix: {
    env: 'QUEUE_PREFIX', default: 'bull', parse: text,
    doc: 'BullMQ key prefix: BullMQ producers and tools with the same prefix see the same queues',
  },
  redisUrl: {
    env: 'REDIS_URL', default: null as string | null, parse: url(['redis:', 'rediss:']),
    doc: 'Redis for queues and heartbeats; unset: the gateway runs its own redis-server',
  },
  dataDir: { env: 'DATA_DIR', default: './var', parse: text, doc: 'where the embedded redis-server keeps its data' },
  redisServerBin: {
    env: 'REDIS_SERVER_BIN', default: 'redis-server', parse: text,
    doc: 'redis-server binary for the embedded Redis',
  },
  configPath: {
    env: 'BRAINSTEM_CONFIG', default: null as string | null, parse: optionalText,
    doc: 'the edge config file (proxy routes, frontends, tokens, CORS origins); unset: none, auth off',
  },
  insecure: {
    env: 'BRAINSTEM_INSECURE', default: false, parse: boolean,
    doc: 'allow listening beyond loopback with no tokens configured (anyone on the network gets full access)',
  },
  dashboardDir: {
    env: 'DASHBOARD_DIR', default: null as string | null, parse: optionalText,
    doc: 'folder served at / (unset: public/ of the package, the dashboard)',
  },
  httpRequestTimeoutMs: {
    env: 'HTTP_REQUEST_TIMEOUT_MS', default: 60_000, parse: integer(0, 86_400_000),
    doc: 'ms a client has to send a whole request, headers and body (0: no limit); a slower one is cut with 408',
  },
  httpRateLimitPerMinute: {
    env: 'HTTP_RATE_LIMIT_PER_MINUTE', default: 3000, parse: integer(0, 10_000_000),
    doc: 'HTTP requests (WebSocket upgrades included) one client address may make per minute (0: no limit); over it 429 RATE_LIMITED',
  },
  httpRateLimitLoopback: {
    env: 'HTTP_RATE_LIMIT_LOOPBACK', default: false, parse: boolean,
    doc: 'apply the HTTP rate limit to loopback clients too (off: local services, tests and benchmarks are never throttled)',
  },
  heartbeatTimeoutMs: {
    env: 'HEARTBEAT_TIMEOUT', default: 10_000, parse: integer(1, 86_400_000),
    doc: 'ms without a beat before a service is stale (reported on the bus, and stopped when that is safe)',
  },
  heartbeatCheckIntervalMs: {
    env: 'CHECK_INTERVAL', default: 5_000, parse: integer(10, 3_600_000),
    doc: 'ms between two looks for stale services',
  },
  heartbeatStop: {
    env: 'HEARTBEAT_STOP', default: true, parse: boolean,
    doc: 'stop stale services that beat from this machine (SIGTERM, then SIGKILL); off: only report them',
  },
  heartbeatStopGraceMs: {
    env: 'HEARTBEAT_STOP_GRACE', default: 5_000, parse: integer(0, 600_000),
    doc: 'ms between the SIGTERM and the SIGKILL of a stale service that is still there',
  },
  heartbeatWarnCpu: {
    env: 'HEARTBEAT_WARN_CPU', default: 90, parse: integer(0, 100_000),
    doc: 'cpu percent (100 = one core) over which heartbeat.warn is published (0: never)',
  },
  heartbeatWarnMemoryMb: {
    env: 'HEARTBEAT_WARN_MEMORY_MB', default: 2048, parse: integer(0, 16_777_216),
    doc: 'resident memory in MiB over which heartbeat.warn is published (0: never)',
  },
  mongoUrl: {
    env: 'MONGO_URL', default: null as string | null, parse: url(['mongodb:', 'mongodb+srv:']),
    doc: 'MongoDB for heartbeat records, as the original service kept them; unset: they live in Redis',
  },
  mongoDbName: { env: 'DB_NAME', default: 'heartbeat_db', parse: text, doc: 'MongoDB database of the heartbeat records' },
  mongoCollection: { env: 'COLLECTION', default: 'heartbeats', parse: text, doc: 'MongoDB collection of the heartbeat records' },
  otelEndpoint: {
    env: 'OTEL_EXPORTER_OTLP_ENDPOINT', default: null as string | null, parse: url(['http:', 'https:']),
    doc: 'OTLP/HTTP collector base URL; set, the gateway exports spans (publish, task wait, task attempt) to its /v1/traces',
  },
  ecosystemConfig: {
    env: 'ECOSYSTEM_CONFIG', default: null as string | null, parse: optionalText,
    doc: 'PM2 ecosystem file whose apps[].instances limit live heartbeats per name; unset: the project\'s ecosystem.config.cjs',
  },
} satisfies Record<string, Setting<unknown>>;

type Settings = typeof SETTINGS;
export type Config = { -readonly [K in keyof Settings]: ReturnType<Settings[K]['parse']> | Settings[K]['default'] };

export function defaultConfig(): Config {
  const config: Record<string, unknown> = {};
  for (const [key, setting] of Object.entries(SETTINGS)) config[key] = setting.default;
  return config as Config;
}

/** Reads every setting from `env`; throws ConfigError naming the first bad one. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const config: Record<string, unknown> = {};
  for (const [key, setting] of Object.entries(SETTINGS) as [string, Setting<unknown>][]) {
    const raw = env[setting.env];
    if (raw === undefined) {
      config[key] = setting.default;
      continue;
    }
    try {
      config[key] = setting.parse(raw);
    } catch (err) {
      // The message goes to a terminal or a log: a mistyped REDIS_URL keeps its password.
      throw new ConfigError(`${setting.env}=${JSON.stringify(maskUrlCredentials(raw))}: ${(err as Error).message}`);
    }
  }
  return config as Config;
}
