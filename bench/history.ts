/**
 * Retained topics (issue 15): S1 fan-out and S2 latency on a retained topic
 * next to the same runs on a plain one, on the same gateway build, and the
 * Redis memory 10,000 retained 256-byte events take.
 *
 *   npm run build && node dist/bench/history.js [--rounds N] [--quick] [--profile DIR]
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { closeClients, openClient, publishFrameBuilder, sleep } from './lib/clients.js';
import { formatNumber, load, log, median, table } from './lib/report.js';
import { startBenchRedis, startServer, type BenchRedis } from './lib/servers.js';
import { runFanout, type FanoutOptions } from './scenarios/fanout.js';
import { runLatency, type LatencyOptions } from './scenarios/latency.js';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    quick: { type: 'boolean', default: false },
    /** Write a CPU profile of the gateway on the retained topic into this folder. */
    profile: { type: 'string' },
  },
});
const rounds = Math.max(1, Number(args.rounds));
const fanoutOptions: FanoutOptions = { subscribers: 10, payloadBytes: 256, durationMs: args.quick ? 2000 : 5000, window: 1000 };
const latencyOptions: LatencyOptions = { ratePerSecond: 5000, durationMs: args.quick ? 3000 : 10_000, warmupMs: 1000, payloadBytes: 256 };

/** The bench topics (`bench.fanout`, `bench.latency`) retained, or nothing retained. */
const MODES = {
  plain: '[]',
  retained: JSON.stringify([{ topics: 'bench.>', maxEvents: 100_000 }]),
} as const;
type Mode = keyof typeof MODES;

interface Row {
  deliveredPerSecond: number;
  allDelivered: boolean;
  s1P99Ms: number;
  serverMicrosPerDelivery: number;
  s2P50Ms: number;
  s2P99Ms: number;
  s2Lost: number;
}

async function round(mode: Mode, redis: BenchRedis): Promise<Row> {
  const server = await startServer('brainstem', {
    redisUrl: redis.url,
    env: { BUS_HISTORY: MODES[mode], LOG_LEVEL: 'warn' },
    ...(args.profile && mode === 'retained' ? { cpuProfileDir: args.profile } : {}),
  });
  try {
    const s1 = await runFanout(server, fanoutOptions);
    const s2 = await runLatency(server, latencyOptions);
    return {
      deliveredPerSecond: s1.deliveredPerSecond,
      allDelivered: s1.allDelivered,
      s1P99Ms: s1.p99Ms,
      serverMicrosPerDelivery: s1.serverMicrosPerDelivery,
      s2P50Ms: s2.p50Ms,
      s2P99Ms: s2.p99Ms,
      s2Lost: s2.lost,
    };
  } finally {
    await server.stop();
  }
}

/** Redis `used_memory` growth per 10,000 retained events with 256-byte payloads. */
async function memoryPer10k(redis: BenchRedis): Promise<{ bytes: number; perEvent: number }> {
  const count = 10_000;
  const server = await startServer('brainstem', {
    redisUrl: redis.url, env: { BUS_HISTORY: JSON.stringify([{ topics: 'mem.>', maxEvents: 1_000_000 }]), LOG_LEVEL: 'warn' },
  });
  const client = new Redis(redis.url);
  try {
    const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await client.info('memory'))?.[1]);
    const key = 'brainstem:bus:history:mem.>';
    await client.del(key);
    const before = await usedMemory();
    const publisher = await openClient(server.url, true);
    const frame = publishFrameBuilder('mem.event', 256);
    for (let seq = 0; seq < count; seq++) publisher.send(frame(seq, 0));
    let stored = false;
    for (const deadline = Date.now() + 60_000; !stored && Date.now() < deadline;) {
      stored = await client.xlen(key) >= count;
      if (!stored) await sleep(50);
    }
    if (!stored) throw new Error(`fewer than ${count} events stored within 60 s`);
    const bytes = (await usedMemory()) - before;
    await closeClients([publisher]);
    await client.del(key);
    return { bytes, perEvent: bytes / count };
  } finally {
    client.disconnect();
    await server.stop();
  }
}

async function main(): Promise<void> {
  log(`history bench: ${rounds} round(s), load ${load()}`);
  const redis = await startBenchRedis();
  const rows: Record<Mode, Row[]> = { plain: [], retained: [] };
  try {
    for (let r = 0; r < rounds; r++) {
      const order: Mode[] = r % 2 === 0 ? ['plain', 'retained'] : ['retained', 'plain'];
      for (const mode of order) {
        const row = await round(mode, redis);
        rows[mode].push(row);
        log(`round ${r + 1} ${mode}: ${JSON.stringify(row)}`);
      }
    }
    const memory = await memoryPer10k(redis);
    const columns: (keyof Row)[] = ['deliveredPerSecond', 'allDelivered', 's1P99Ms', 'serverMicrosPerDelivery', 's2P50Ms', 's2P99Ms', 's2Lost'];
    const medianRow = (list: Row[]) => columns.map((key) => {
      const values = list.map((row) => row[key]);
      return typeof values[0] === 'boolean' ? formatNumber(values.every(Boolean)) : formatNumber(median(values as number[]), key.endsWith('Ms') || key.startsWith('server') ? 2 : 0);
    });
    process.stdout.write(`\nS1 (1 publisher, 10 subscribers, 256 B) and S2 (5,000 msg/s), medians of ${rounds} round(s)\n`);
    process.stdout.write(`${table(['topic', ...columns], [['plain', ...medianRow(rows.plain)], ['retained', ...medianRow(rows.retained)]])}\n`);
    const ratio = median(rows.retained.map((row, i) => row.deliveredPerSecond / (rows.plain[i]?.deliveredPerSecond ?? Number.NaN)));
    process.stdout.write(`  S1 delivered/s, retained / plain: ${formatNumber(ratio, 2)} (target ≥ 0.5: ${ratio >= 0.5 ? 'met' : 'NOT met'})\n`);
    process.stdout.write(`  Redis memory for 10,000 retained 256-byte events: ${formatNumber(memory.bytes / 1024 / 1024, 2)} MiB (${formatNumber(memory.perEvent)} B/event)\n`);
    process.stdout.write(`${JSON.stringify({ bench: 'history', rounds, rows, ratio, memory, loadavg: load() })}\n`);
  } finally {
    await redis.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`history bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
