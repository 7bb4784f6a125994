/**
 * Q1, queue throughput: enqueue → pull → ack through the gateway with
 * 4 workers × 10 credits, next to raw BullMQ Workers (4 × concurrency 10)
 * on the same Redis in the same run. One producer keeps up to WINDOW
 * enqueues in flight. Prints a table of medians and one JSON line.
 *
 * Run alone with bench/queues.ts; `npm run bench` runs it as Q1 with the
 * other scenarios.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Queue, Worker, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import type WebSocket from 'ws';
import { redisOptionsFromUrl } from '../../src/redis/redis-settings.js';
import { closeClients, openClient, waitFor } from '../lib/clients.js';
import { formatNumber, load, log, median, medianOf, quantile, table } from '../lib/report.js';
import { startBenchRedis, startServer, type BenchRedis } from '../lib/servers.js';

const WORKERS = 4;
const CREDITS = 10;
const WINDOW = 1000;

export interface QueueBenchOptions {
  /** The bench's Redis; without it one is started for the run. */
  redis?: BenchRedis;
  rounds?: number;
  quick?: boolean;
  /** Write a CPU profile of each gateway run into this folder. */
  profileDir?: string;
  /** Another build's server.js, run as a third side in the same rounds (an A/B of a lever). */
  previousGateway?: string;
}

type QueueRound = {
  tasks: number;
  /** Tasks enqueued, delivered and acked per second, first enqueue to last ack. */
  completedPerSecond: number;
  /** Stored (receipted / add resolved) per second while the workers run. */
  enqueuedPerSecond: number;
  /** Enqueue sent → task in a worker's hands: mostly time queued behind the backlog the producer builds. */
  p50Ms: number;
  p99Ms: number;
  allCompleted: boolean;
  serverCpuPercent: number;
  /**
   * CPU time per task of each process on the path, in µs (these four): the bench's own
   * (its clients; for raw BullMQ, producer and Workers), the gateway's, and
   * Redis's. Q1 keeps every process busy, so on a machine with fewer cores
   * than busy processes the sum, not one process, sets the throughput.
   */
  benchMicrosPerTask: number;
  gatewayMicrosPerTask: number;
  redisMicrosPerTask: number;
  totalMicrosPerTask: number;
  /** Redis script calls (`EVALSHA`) and all Redis commands per task, from `INFO commandstats`. */
  evalshaPerTask: number;
  redisCommandsPerTask: number;
};

type CpuPerTask = Pick<QueueRound, 'benchMicrosPerTask' | 'gatewayMicrosPerTask' | 'redisMicrosPerTask' | 'totalMicrosPerTask'>;

/** Calls and µs per command so far (`INFO commandstats`: `cmdstat_evalsha:calls=12,usec=340,…`). */
async function commandCalls(redis: BenchRedis): Promise<Map<string, { calls: number; usec: number }>> {
  const client = new Redis(redisOptionsFromUrl(redis.url));
  try {
    const info = await client.info('commandstats');
    const calls = new Map<string, { calls: number; usec: number }>();
    for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) calls.set(match[1] as string, { calls: Number(match[2]), usec: Number(match[3]) });
    return calls;
  } finally {
    client.disconnect();
  }
}

/**
 * Starts counting the CPU of the bench process, Redis and (if given) the
 * gateway; the function returned reads each per task done since.
 */
function cpuMeter(redis: BenchRedis, gatewayCpuSeconds?: () => number): (tasks: number) => CpuPerTask {
  const redisBefore = redis.cpuSeconds();
  const gatewayBefore = gatewayCpuSeconds?.() ?? 0;
  const benchBefore = process.cpuUsage();
  return (tasks) => {
    const usage = process.cpuUsage(benchBefore);
    const perTask = (seconds: number) => (tasks > 0 ? (seconds * 1e6) / tasks : Number.NaN);
    const bench = perTask((usage.user + usage.system) / 1e6);
    const gateway = gatewayCpuSeconds ? perTask(gatewayCpuSeconds() - gatewayBefore) : Number.NaN;
    const redisMicros = perTask(redis.cpuSeconds() - redisBefore);
    return {
      benchMicrosPerTask: bench, gatewayMicrosPerTask: gateway, redisMicrosPerTask: redisMicros,
      totalMicrosPerTask: bench + (gatewayCpuSeconds ? gateway : 0) + redisMicros,
    };
  };
}

/** One side's run, as runGateway and runRaw set it up. */
interface SideRun {
  /** Sends the first window of enqueues; their receipts send the rest. */
  start(): void;
  /** Tasks done so far. */
  done(): number;
  /** When the last task was stored (0: not yet). */
  storedAt(): number;
  latencies: number[];
  /** The gateway's CPU seconds so far, when there is one. */
  gatewayCpuSeconds?: () => number;
}

/** Runs a side from its first enqueue until every task is done, and what each process spent meanwhile. */
async function measure(redis: BenchRedis, tasks: number, side: SideRun): Promise<QueueRound> {
  const gatewayBefore = side.gatewayCpuSeconds?.() ?? 0;
  const callsBefore = await commandCalls(redis);
  const cpu = cpuMeter(redis, side.gatewayCpuSeconds);
  const started = performance.now();
  side.start();
  const all = await waitFor(() => side.done() >= tasks, 120_000);
  const completedAt = performance.now();
  const done = Math.min(side.done(), tasks);
  const seconds = (completedAt - started) / 1000;
  const perTask = cpu(done);
  const callsAfter = await commandCalls(redis);
  const callsSince = (name?: string) => [...callsAfter].reduce((sum, [command, { calls }]) => (
    name === undefined || command === name ? sum + calls - (callsBefore.get(command)?.calls ?? 0) : sum), 0);
  const redisMicrosByCommand: Record<string, number> = {};
  for (const [command, { usec }] of callsAfter) {
    const perTask = (usec - (callsBefore.get(command)?.usec ?? 0)) / done;
    if (perTask >= 1) redisMicrosByCommand[command] = Math.round(perTask * 10) / 10;
  }
  // Where Redis's time goes (its own count, without its event loop), for finding a lever.
  log(`  Redis µs a task by command: ${JSON.stringify(redisMicrosByCommand)}`);
  return {
    ...summarize(tasks, started, side.storedAt() || completedAt, completedAt, side.latencies, done),
    allCompleted: all,
    serverCpuPercent: side.gatewayCpuSeconds ? ((side.gatewayCpuSeconds() - gatewayBefore) / seconds) * 100 : Number.NaN,
    ...perTask,
    // Less the two INFO calls of this count.
    evalshaPerTask: callsSince('evalsha') / done,
    redisCommandsPerTask: (callsSince() - 2) / done,
  };
}

/** The options the gateway stores with each task, so that both sides store the same. */
export const GATEWAY_JOB_OPTIONS: JobsOptions = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: { count: 1000 },
  removeOnFail: false,
  stackTraceLimit: 50,
};

function summarize(tasks: number, started: number, storedAt: number, completedAt: number, latencies: number[], done: number): Omit<QueueRound, 'serverCpuPercent' | 'evalshaPerTask' | 'redisCommandsPerTask' | keyof CpuPerTask> {
  latencies.sort((a, b) => a - b);
  return {
    tasks,
    completedPerSecond: (done / (completedAt - started)) * 1000,
    enqueuedPerSecond: (tasks / (storedAt - started)) * 1000,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    allCompleted: done === tasks,
  };
}

/** Through the gateway (this build, or `previousGateway`'s): WebSocket producer and workers speaking the /bus protocol. */
export async function runGateway(redis: BenchRedis, queue: string, tasks: number, profileDir?: string, previousGateway?: string): Promise<QueueRound> {
  const server = await startServer(previousGateway ? 'previous' : 'brainstem', {
    redisUrl: redis.url, env: { LOG_LEVEL: 'warn' },
    ...(profileDir && !previousGateway ? { cpuProfileDir: profileDir } : {}),
    ...(previousGateway ? { previousGateway } : {}),
  });
  const clients: WebSocket[] = [];
  try {
    const producer = await openClient(server.url, true);
    clients.push(producer);
    const latencies: number[] = [];
    let acked = 0;
    for (let w = 0; w < WORKERS; w++) {
      const worker = await openClient(server.url, true);
      clients.push(worker);
      worker.on('message', (data) => {
        const frame = JSON.parse(String(data)) as { task?: { id: string; payload: { t: number } } };
        if (!frame.task) {
          if ('ok' in frame) acked++;
          return;
        }
        latencies.push(performance.now() - frame.task.payload.t);
        worker.send(`{"action":"ack","taskId":"${frame.task.id}","id":1}`);
        worker.send(`{"action":"pull","queue":"${queue}"}`);
      });
      for (let c = 0; c < CREDITS; c++) worker.send(`{"action":"pull","queue":"${queue}"}`);
    }

    let sent = 0;
    let stored = 0;
    let storedAt = 0;
    const send = () => {
      while (sent < tasks && sent - stored < WINDOW) {
        producer.send(`{"action":"enqueue","queue":"${queue}","task":{"n":${sent},"t":${performance.now()}},"id":${sent}}`);
        sent++;
      }
    };
    producer.on('message', (data) => {
      if (!String(data).startsWith('{"ok":true')) return;
      stored++;
      if (stored === tasks) storedAt = performance.now();
      send();
    });
    return await measure(redis, tasks, {
      start: send, done: () => acked, storedAt: () => storedAt, latencies, gatewayCpuSeconds: () => server.cpuSeconds(),
    });
  } finally {
    await closeClients(clients);
    await server.stop();
  }
}

/** Raw BullMQ in this process: Queue.add and 4 Workers with a no-op processor. */
export async function runRaw(redis: BenchRedis, queue: string, tasks: number): Promise<QueueRound> {
  const options = redisOptionsFromUrl(redis.url);
  const producerConnection = new Redis({ ...options, maxRetriesPerRequest: null });
  const workerConnection = new Redis({ ...options, maxRetriesPerRequest: null });
  const producer = new Queue(queue, { connection: producerConnection, skipVersionCheck: true });
  const latencies: number[] = [];
  let completed = 0;
  const workers = Array.from({ length: WORKERS }, () => new Worker(queue, async (job) => {
    latencies.push(performance.now() - (job.data as { t: number }).t);
  }, { connection: workerConnection, concurrency: CREDITS, skipVersionCheck: true }));
  for (const worker of workers) worker.on('completed', () => completed++);
  try {
    await Promise.all(workers.map((w) => w.waitUntilReady()));
    let sent = 0;
    let stored = 0;
    let storedAt = 0;
    const send = () => {
      while (sent < tasks && sent - stored < WINDOW) {
        const n = sent++;
        void producer.add(queue, { n, t: performance.now() }, { ...GATEWAY_JOB_OPTIONS, jobId: randomUUID() }).then(() => {
          stored++;
          if (stored === tasks) storedAt = performance.now();
          send();
        });
      }
    };
    return await measure(redis, tasks, { start: send, done: () => completed, storedAt: () => storedAt, latencies });
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await producer.close();
    producerConnection.disconnect();
    workerConnection.disconnect();
  }
}

const COLUMNS: { key: keyof QueueRound & string; label: string; digits?: number }[] = [
  { key: 'completedPerSecond', label: 'completed/s' },
  { key: 'enqueuedPerSecond', label: 'enqueued/s' },
  { key: 'p50Ms', label: 'enqueue→worker p50 ms', digits: 0 },
  { key: 'p99Ms', label: 'p99 ms', digits: 0 },
  { key: 'allCompleted', label: 'all completed' },
  { key: 'serverCpuPercent', label: 'gateway CPU %' },
  { key: 'benchMicrosPerTask', label: 'CPU µs/task: bench' },
  { key: 'gatewayMicrosPerTask', label: 'gateway' },
  { key: 'redisMicrosPerTask', label: 'Redis' },
  { key: 'totalMicrosPerTask', label: 'total' },
  { key: 'evalshaPerTask', label: 'evalsha/task', digits: 2 },
  { key: 'redisCommandsPerTask', label: 'Redis cmds/task', digits: 2 },
];

/** Q1: runs the rounds, prints the table and the JSON line, returns the JSON. */
export async function runQueueBench(options: QueueBenchOptions = {}): Promise<object> {
  const rounds = Math.max(1, options.rounds ?? 3);
  const tasks = options.quick ? 5000 : 20_000;
  const ownRedis = options.redis ? null : await startBenchRedis();
  const redis = options.redis ?? (ownRedis as BenchRedis);
  const gateway: QueueRound[] = [];
  const previous: QueueRound[] = [];
  const raw: QueueRound[] = [];
  const loads = [load()];
  const sides = options.previousGateway ? ['gateway', 'previous', 'raw'] : ['gateway', 'raw'];
  try {
    for (let round = 0; round < rounds; round++) {
      // Rotate who goes first, so no side always gets the cooler machine.
      const order = sides.map((_, i) => sides[(i + round) % sides.length] as string);
      for (const side of order) {
        const queue = `bench.q1.${side}.${round}.${randomUUID().slice(0, 8)}`;
        const result = side === 'gateway' ? await runGateway(redis, queue, tasks, options.profileDir)
          : side === 'previous' ? await runGateway(redis, queue, tasks, undefined, options.previousGateway)
          : await runRaw(redis, queue, tasks);
        (side === 'gateway' ? gateway : side === 'previous' ? previous : raw).push(result);
        log(`Q1 round ${round + 1}/${rounds} ${side}: ${JSON.stringify(result)}`);
      }
      loads.push(load());
    }
  } finally {
    await ownRedis?.stop();
  }
  const medians = { brainstem: medianOf(gateway), rawBullmq: medianOf(raw), ...(previous.length > 0 ? { previousBuild: medianOf(previous) } : {}) };
  const ratio = median(gateway.map((g, i) => g.completedPerSecond / (raw[i]?.completedPerSecond ?? Number.NaN)));
  const enqueueRatio = median(gateway.map((g, i) => g.enqueuedPerSecond / (raw[i]?.enqueuedPerSecond ?? Number.NaN)));
  const rows = [
    ['brainstem (gateway, /bus)', ...COLUMNS.map((c) => formatNumber(medians.brainstem[c.key] as number | boolean, c.digits ?? 0))],
    ...(medians.previousBuild ? [['previous build', ...COLUMNS.map((c) => formatNumber(medians.previousBuild?.[c.key] as number | boolean, c.digits ?? 0))]] : []),
    ['raw BullMQ Workers', ...COLUMNS.map((c) => formatNumber(medians.rawBullmq[c.key] as number | boolean, c.digits ?? 0))],
  ];
  process.stdout.write(`\nQ1 queues: ${tasks} tasks, 1 producer (window ${WINDOW}), ${WORKERS} workers × ${CREDITS} credits — medians of ${rounds}\n`);
  process.stdout.write(`${table(['side', ...COLUMNS.map((c) => c.label)], rows)}\n`);
  process.stdout.write(`  completed/s, gateway vs raw BullMQ: ${formatNumber(ratio, 2)}\n`);
  process.stdout.write(`  enqueued/s, gateway vs raw BullMQ: ${formatNumber(enqueueRatio, 2)}\n`);
  const previousRatio = previous.length > 0 ? median(gateway.map((g, i) => g.completedPerSecond / (previous[i]?.completedPerSecond ?? Number.NaN))) : undefined;
  if (previousRatio !== undefined) process.stdout.write(`  completed/s, this build vs the previous one (per-round median): ${formatNumber(previousRatio, 2)}\n`);
  // Where every process is busy and they share fewer cores than there are
  // processes, throughput follows the CPU all of them spend per task.
  const cpuRatio = median(gateway.map((g, i) => (raw[i]?.totalMicrosPerTask ?? Number.NaN) / g.totalMicrosPerTask));
  process.stdout.write(`  CPU per task of all processes, raw BullMQ / gateway: ${formatNumber(cpuRatio, 2)} (the completed/s ratio a machine they all saturate allows)\n`);
  const summary = {
    scenario: 'Q1',
    tasks,
    workers: WORKERS,
    credits: CREDITS,
    window: WINDOW,
    rounds,
    medians,
    perRound: { brainstem: gateway, rawBullmq: raw, ...(previous.length > 0 ? { previousBuild: previous } : {}) },
    ratios: {
      completedVsRawBullmq: ratio, enqueuedVsRawBullmq: enqueueRatio, cpuPerTaskRawVsGateway: cpuRatio,
      ...(previousRatio !== undefined ? { completedVsPreviousBuild: previousRatio } : {}),
    },
    loadavg: loads,
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  return summary;
}
