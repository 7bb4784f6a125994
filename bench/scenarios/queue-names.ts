/**
 * Q3, many queue names: one worker connection has a pull waiting on each
 * of N distinct queues, one producer enqueues one task on each, the worker
 * acks them all, then the queues are left idle until the gateway evicts
 * them. For N = 1,000 and 10,000 (300 and 1,000 with --quick): the Redis
 * clients of the gateway, its RSS per live queue and after eviction, the
 * time to deliver all N tasks, and its CPU while N pulls wait with nothing
 * to do and once the queues are evicted.
 *
 * Run alone: npm run build && node dist/bench/scenarios/queue-names.js
 * (`npm run bench` runs it as Q3.)
 */
import { Redis } from 'ioredis';
import type WebSocket from 'ws';
import { closeClients, now, openClient, sleep, waitFor } from '../lib/clients.js';
import { formatNumber, load, log, MB, medianOf, table } from '../lib/report.js';
import { startBenchRedis, startServer, type BenchRedis, type RunningServer } from '../lib/servers.js';

const IDLE_MS = 2000;
const QUIET_SECONDS = 3;
/** V8 collects an idle process's old garbage on its own (its memory reducer) within about this long. */
const SETTLE_MS = 30_000;

export interface QueueNamesOptions {
  redis?: BenchRedis;
  rounds?: number;
  quick?: boolean;
}

type QueueNamesRound = {
  queues: number;
  redisClientsIdle: number;
  redisClientsLive: number;
  rssIdleMb: number;
  /** RSS added by the live queues (each with a pull waiting), per queue. */
  rssPerLiveQueueKb: number;
  /** RSS once every queue was evicted, above the idle figure. */
  rssAfterEvictionAboveIdleMb: number;
  /** V8's heap in use then (garbage not yet collected included), and what it holds from the system. */
  heapUsedAfterEvictionMb: number;
  heapTotalAfterEvictionMb: number;
  /** RSS above the idle figure SETTLE_MS after the eviction, V8's own GCs done. */
  rssSettledAboveIdleMb: number;
  /** First enqueue sent → the N-th task in the worker's hands. */
  deliverAllMs: number;
  /** Gateway CPU while N pulls wait and nothing happens. */
  waitingCpuPercent: number;
  /** Gateway CPU once the queues are evicted. */
  evictedCpuPercent: number;
  allDelivered: boolean;
};

/** Redis clients other than the probe's own connection. */
async function redisClients(probe: Redis): Promise<number> {
  const list = (await probe.client('LIST')) as string;
  return list.trim().split('\n').length - 1;
}

/** One unlabelled figure of the gateway's /metrics. */
async function figure(server: RunningServer, name: string): Promise<number> {
  const metrics = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)`, 'm').exec(metrics)?.[1] ?? Number.NaN);
}

async function cpuPercentOver(server: RunningServer, seconds: number): Promise<number> {
  const before = server.cpuSeconds();
  await sleep(seconds * 1000);
  return ((server.cpuSeconds() - before) / seconds) * 100;
}

/** Sends frames and resolves once `count` replies with ids 1..count came back. */
function replies(ws: WebSocket, count: number): Promise<void> {
  return new Promise((resolve) => {
    let answered = 0;
    const onMessage = (data: Buffer): void => {
      const frame = JSON.parse(String(data)) as { id?: unknown; ok?: boolean };
      if (typeof frame.id === 'number' && ++answered === count) {
        ws.off('message', onMessage);
        resolve();
      }
    };
    ws.on('message', onMessage);
  });
}

async function runRound(redis: BenchRedis, queues: number, round: number): Promise<QueueNamesRound> {
  const prefix = `q3r${round}n${queues}`;
  const server = await startServer('brainstem', {
    redisUrl: redis.url,
    env: {
      LOG_LEVEL: 'warn', QUEUE_PREFIX: prefix, QUEUE_IDLE_MS: String(IDLE_MS),
      QUEUE_MAX_PER_CONNECTION: String(queues), QUEUE_MAX_LIVE: String(queues),
    },
  });
  const probe = new Redis(redis.url);
  const clients: WebSocket[] = [];
  try {
    const worker = await openClient(server.url, true);
    const producer = await openClient(server.url, true);
    clients.push(worker, producer);
    await sleep(1000);
    const redisClientsIdle = await redisClients(probe);
    const rssIdle = server.rss();

    const pulled = replies(worker, queues);
    for (let i = 0; i < queues; i++) worker.send(`{"action":"pull","queue":"q3.${i}","id":${i + 1}}`);
    await pulled;
    const redisClientsLive = await redisClients(probe);
    const rssLive = server.rss();
    const waitingCpuPercent = await cpuPercentOver(server, QUIET_SECONDS);

    let delivered = 0;
    worker.on('message', (data: Buffer) => {
      const frame = JSON.parse(String(data)) as { task?: { id: string } };
      if (!frame.task) return;
      delivered++;
      worker.send(JSON.stringify({ action: 'ack', taskId: frame.task.id }));
    });
    const start = now();
    for (let i = 0; i < queues; i++) producer.send(`{"action":"enqueue","queue":"q3.${i}","task":${i}}`);
    const allDelivered = await waitFor(() => delivered >= queues, 120_000);
    const deliverAllMs = now() - start;

    const evicted = await (async () => {
      const deadline = Date.now() + IDLE_MS * 10 + 30_000;
      while (Date.now() < deadline) {
        if ((await figure(server, 'brainstem_queue_live')) === 0) return true;
        await sleep(250);
      }
      return false;
    })();
    if (!evicted) log(`Q3: ${queues} queues were not all evicted`);
    await sleep(1000);
    const evictedCpuPercent = await cpuPercentOver(server, QUIET_SECONDS);
    const rssAfterEviction = server.rss();
    const heapUsedAfterEviction = await figure(server, 'nodejs_heap_size_used_bytes');
    const heapTotalAfterEviction = await figure(server, 'nodejs_heap_size_total_bytes');
    await sleep(SETTLE_MS);
    return {
      queues,
      redisClientsIdle,
      redisClientsLive,
      rssIdleMb: rssIdle / MB,
      rssPerLiveQueueKb: (rssLive - rssIdle) / queues / 1024,
      rssAfterEvictionAboveIdleMb: (rssAfterEviction - rssIdle) / MB,
      heapUsedAfterEvictionMb: heapUsedAfterEviction / MB,
      heapTotalAfterEvictionMb: heapTotalAfterEviction / MB,
      rssSettledAboveIdleMb: (server.rss() - rssIdle) / MB,
      deliverAllMs,
      waitingCpuPercent,
      evictedCpuPercent,
      allDelivered: allDelivered && evicted,
    };
  } finally {
    await closeClients(clients);
    probe.disconnect();
    await server.stop();
  }
}

export async function runQueueNamesBench(options: QueueNamesOptions = {}): Promise<void> {
  const redis = options.redis ?? (await startBenchRedis());
  const rounds = options.rounds ?? 3;
  const sizes = options.quick ? [300, 1000] : [1000, 10_000];
  try {
    const rows: string[][] = [];
    for (const queues of sizes) {
      const results: QueueNamesRound[] = [];
      for (let round = 0; round < rounds; round++) {
        log(`Q3 round ${round + 1}/${rounds}: ${queues} queues, load ${load()}`);
        results.push(await runRound(redis, queues, round));
      }
      const m = medianOf(results);
      process.stdout.write(`${JSON.stringify({ scenario: 'Q3', ...m })}\n`);
      rows.push([
        formatNumber(m.queues), formatNumber(m.redisClientsIdle), formatNumber(m.redisClientsLive), formatNumber(m.rssIdleMb, 1),
        formatNumber(m.rssPerLiveQueueKb, 1), formatNumber(m.rssAfterEvictionAboveIdleMb, 1),
        formatNumber(m.heapUsedAfterEvictionMb, 1), formatNumber(m.heapTotalAfterEvictionMb, 1), formatNumber(m.rssSettledAboveIdleMb, 1),
        formatNumber(m.deliverAllMs),
        formatNumber(m.waitingCpuPercent, 1), formatNumber(m.evictedCpuPercent, 1), formatNumber(m.allDelivered),
      ]);
    }
    process.stdout.write(`\nQ3 many queue names (median of ${rounds})\n`);
    process.stdout.write(`${table([
      'queues', 'redis clients idle', 'redis clients live', 'RSS idle MB', 'RSS KB / live queue', 'RSS after eviction − idle MB', 'heap used MB', 'heap total MB', `RSS ${SETTLE_MS / 1000} s later − idle MB`,
      'deliver all ms', 'CPU % pulls waiting', 'CPU % evicted', 'all delivered + evicted',
    ], rows)}\n`);
  } finally {
    if (!options.redis) await redis.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  runQueueNamesBench({ quick, rounds: quick ? 1 : 3 }).catch((err: unknown) => {
    process.stderr.write(`Q3 failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
