/**
 * Q2, dispatch latency: one worker always has a pull waiting; one producer
 * enqueues at a steady 200 tasks/s. For each task: when its enqueue was
 * sent, when its receipt came back (the task is stored), when the worker
 * had it. Latency from the receipt is what issue 19 compares (it can be
 * below zero: a server may hand the task out before its receipt arrives);
 * from the send is the whole trip. Three sides in the same run:
 * - brainstem: `enqueue` / `pull` / `ack` on /bus;
 * - raw BullMQ: Queue.add → a Worker's processor is called (concurrency 1);
 * - JetStream: js.publish → a pull consumer's callback (one message at a time),
 *   workqueue retention, file storage.
 *
 * Run alone: npm run build && node dist/bench/dispatch.js [--rounds 3] [--quick]
 * (`npm run bench` runs it as Q2.)
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { AckPolicy, connect as natsConnect, RetentionPolicy, StorageType } from 'nats';
import type WebSocket from 'ws';
import { redisOptionsFromUrl } from '../src/redis/redis-settings.js';
import { closeClients, now, openClient, sleep, waitFor } from './lib/clients.js';
import { formatNumber, load, log, median, medianOf, quantile, table } from './lib/report.js';
import { natsServerPath, startBenchRedis, startServer } from './lib/servers.js';
import { GATEWAY_JOB_OPTIONS } from './scenarios/queues.js';

const RATE = 200;
const WARMUP_MS = 1000;

type Side = 'brainstem' | 'bullmq' | 'jetstream';
const LABELS: Record<Side, string> = {
  brainstem: 'brainstem (enqueue → waiting pull)',
  bullmq: 'raw BullMQ (add → processor)',
  jetstream: 'JetStream (publish → pull consumer)',
};

export interface DispatchOptions {
  redisUrl?: string;
  rounds?: number;
  quick?: boolean;
}

type DispatchRound = {
  tasks: number;
  p50FromReceiptMs: number;
  p99FromReceiptMs: number;
  p50FromSendMs: number;
  p99FromSendMs: number;
  /** Enqueue sent → receipt back. */
  receiptP50Ms: number;
  allDispatched: boolean;
};

/** What one side's run records, indexed by task number. */
class Timeline {
  readonly sentAt: number[];
  readonly receiptAt: number[];
  readonly deliveredAt: number[];
  delivered = 0;
  constructor(readonly tasks: number) {
    this.sentAt = new Array<number>(tasks).fill(Number.NaN);
    this.receiptAt = new Array<number>(tasks).fill(Number.NaN);
    this.deliveredAt = new Array<number>(tasks).fill(Number.NaN);
  }

  deliver(n: number): void {
    if (Number.isNaN(this.deliveredAt[n] as number)) {
      this.deliveredAt[n] = now();
      this.delivered++;
    }
  }

  summarize(skip: number, all: boolean): DispatchRound {
    const fromReceipt: number[] = [];
    const fromSend: number[] = [];
    const receipt: number[] = [];
    for (let n = skip; n < this.tasks; n++) {
      const d = this.deliveredAt[n] as number;
      fromReceipt.push(d - (this.receiptAt[n] as number));
      fromSend.push(d - (this.sentAt[n] as number));
      receipt.push((this.receiptAt[n] as number) - (this.sentAt[n] as number));
    }
    for (const list of [fromReceipt, fromSend, receipt]) list.sort((a, b) => a - b);
    return {
      tasks: this.tasks - skip,
      p50FromReceiptMs: quantile(fromReceipt, 0.5),
      p99FromReceiptMs: quantile(fromReceipt, 0.99),
      p50FromSendMs: quantile(fromSend, 0.5),
      p99FromSendMs: quantile(fromSend, 0.99),
      receiptP50Ms: quantile(receipt, 0.5),
      allDispatched: all,
    };
  }
}

/** Calls `enqueue(n)` for n = 0..tasks-1 at RATE per second, paced on a 1 ms timer. */
async function paced(tasks: number, enqueue: (n: number) => void): Promise<void> {
  let sent = 0;
  const start = now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(tasks, Math.floor(((now() - start) * RATE) / 1000));
      while (sent < due) enqueue(sent++);
      if (sent >= tasks) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
}

async function finish(timeline: Timeline): Promise<DispatchRound> {
  const all = await waitFor(() => timeline.delivered >= timeline.tasks && timeline.receiptAt.every((t) => !Number.isNaN(t)), 30_000);
  return timeline.summarize(Math.round((WARMUP_MS * RATE) / 1000), all);
}

async function runGateway(redisUrl: string, queue: string, tasks: number): Promise<DispatchRound> {
  const server = await startServer('brainstem', { redisUrl, env: { LOG_LEVEL: 'warn' } });
  const clients: WebSocket[] = [];
  try {
    const producer = await openClient(server.url, true);
    const worker = await openClient(server.url, true);
    clients.push(producer, worker);
    const timeline = new Timeline(tasks);
    const pull = `{"action":"pull","queue":"${queue}"}`;
    worker.on('message', (data: Buffer) => {
      const frame = JSON.parse(String(data)) as { task?: { id: string; payload: { n: number } } };
      if (!frame.task) return;
      timeline.deliver(frame.task.payload.n);
      worker.send(`{"action":"ack","taskId":${JSON.stringify(frame.task.id)}}`);
      worker.send(pull);
    });
    producer.on('message', (data: Buffer) => {
      const frame = JSON.parse(String(data)) as { ok?: boolean; id?: number };
      if (frame.ok === true && typeof frame.id === 'number') timeline.receiptAt[frame.id] = now();
    });
    worker.send(pull);
    await sleep(200);
    await paced(tasks, (n) => {
      timeline.sentAt[n] = now();
      producer.send(`{"action":"enqueue","queue":"${queue}","task":{"n":${n}},"id":${n}}`);
    });
    return await finish(timeline);
  } finally {
    await closeClients(clients);
    await server.stop();
  }
}

async function runBullmq(redisUrl: string, queue: string, tasks: number): Promise<DispatchRound> {
  const options = redisOptionsFromUrl(redisUrl);
  const producerConnection = new Redis({ ...options, maxRetriesPerRequest: null });
  const workerConnection = new Redis({ ...options, maxRetriesPerRequest: null });
  const producer = new Queue(queue, { connection: producerConnection, skipVersionCheck: true });
  const timeline = new Timeline(tasks);
  const worker = new Worker(queue, async (job) => {
    timeline.deliver((job.data as { n: number }).n);
  }, { connection: workerConnection, concurrency: 1, skipVersionCheck: true });
  try {
    await worker.waitUntilReady();
    await sleep(200);
    await paced(tasks, (n) => {
      timeline.sentAt[n] = now();
      void producer.add(queue, { n }, { ...GATEWAY_JOB_OPTIONS, jobId: randomUUID() }).then(() => {
        timeline.receiptAt[n] = now();
      });
    });
    return await finish(timeline);
  } finally {
    await worker.close();
    await producer.close();
    producerConnection.disconnect();
    workerConnection.disconnect();
  }
}

async function runJetStream(tasks: number): Promise<DispatchRound> {
  const server = await startServer('nats', { redisUrl: '', jetStream: true });
  const nc = await natsConnect({ servers: `127.0.0.1:${server.port}`, reconnect: false });
  try {
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: 'Q2', subjects: ['q2.tasks'], retention: RetentionPolicy.Workqueue, storage: StorageType.File });
    await jsm.consumers.add('Q2', { durable_name: 'worker', ack_policy: AckPolicy.Explicit });
    const js = nc.jetstream();
    const consumer = await js.consumers.get('Q2', 'worker');
    const timeline = new Timeline(tasks);
    const messages = await consumer.consume({
      max_messages: 1,
      callback: (msg) => {
        timeline.deliver((msg.json() as { n: number }).n);
        msg.ack();
      },
    });
    await sleep(200);
    await paced(tasks, (n) => {
      timeline.sentAt[n] = now();
      void js.publish('q2.tasks', JSON.stringify({ n })).then(() => {
        timeline.receiptAt[n] = now();
      });
    });
    const result = await finish(timeline);
    await messages.close();
    return result;
  } finally {
    await nc.close();
    await server.stop();
  }
}

const COLUMNS: { key: keyof DispatchRound & string; label: string; digits?: number }[] = [
  { key: 'tasks', label: 'tasks' },
  { key: 'p50FromReceiptMs', label: 'receipt→worker p50 ms', digits: 2 },
  { key: 'p99FromReceiptMs', label: 'p99 ms', digits: 2 },
  { key: 'p50FromSendMs', label: 'send→worker p50 ms', digits: 2 },
  { key: 'p99FromSendMs', label: 'p99 ms', digits: 2 },
  { key: 'receiptP50Ms', label: 'send→receipt p50 ms', digits: 2 },
  { key: 'allDispatched', label: 'all dispatched' },
];

/** Q2: runs the rounds, prints the table and the JSON line, returns the JSON. */
export async function runDispatchBench(options: DispatchOptions = {}): Promise<object> {
  const rounds = Math.max(1, options.rounds ?? 3);
  const tasks = Math.round(((options.quick ? 3000 : 10_000) + WARMUP_MS) * RATE / 1000);
  const sides: Side[] = ['brainstem', 'bullmq'];
  if (natsServerPath()) sides.push('jetstream');
  else process.stdout.write('SKIP JetStream in Q2: nats-server is not installed\n');
  const ownRedis = options.redisUrl ? null : await startBenchRedis();
  const redisUrl = options.redisUrl ?? (ownRedis as { url: string }).url;
  const bySide = new Map<Side, DispatchRound[]>(sides.map((side) => [side, []]));
  const loads = [load()];
  try {
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < sides.length; i++) {
        const side = sides[(i + round) % sides.length] as Side;
        const queue = `bench.q2.${round}.${randomUUID().slice(0, 8)}`;
        const result = side === 'brainstem' ? await runGateway(redisUrl, queue, tasks)
          : side === 'bullmq' ? await runBullmq(redisUrl, queue, tasks)
          : await runJetStream(tasks);
        bySide.get(side)?.push(result);
        log(`Q2 round ${round + 1}/${rounds} ${side}: ${JSON.stringify(result)}`);
      }
      loads.push(load());
    }
  } finally {
    await ownRedis?.stop();
  }
  const medians = Object.fromEntries([...bySide].map(([side, results]) => [side, medianOf(results)]));
  const ratio = (key: keyof DispatchRound, other: Side) => {
    const ours = bySide.get('brainstem') ?? [];
    const theirs = bySide.get(other);
    if (!theirs) return Number.NaN;
    return median(ours.map((r, i) => (r[key] as number) / ((theirs[i]?.[key] as number) ?? Number.NaN)));
  };
  // p99s only: a p50 from the receipt can be at or below zero, which no ratio describes.
  const ratios: Record<string, number> = {
    p99FromReceiptVsBullmq: ratio('p99FromReceiptMs', 'bullmq'),
    p99FromSendVsBullmq: ratio('p99FromSendMs', 'bullmq'),
    ...(bySide.has('jetstream') ? {
      p99FromReceiptVsJetStream: ratio('p99FromReceiptMs', 'jetstream'),
      p99FromSendVsJetStream: ratio('p99FromSendMs', 'jetstream'),
    } : {}),
  };
  const ours = medians.brainstem as DispatchRound;
  const targets: Record<string, boolean> = {
    'p50 and p99 <= raw BullMQ': ours.p50FromReceiptMs <= (medians.bullmq as DispatchRound).p50FromReceiptMs
      && ours.p99FromReceiptMs <= (medians.bullmq as DispatchRound).p99FromReceiptMs,
    ...(medians.jetstream ? {
      'p50 and p99 <= JetStream': ours.p50FromReceiptMs <= (medians.jetstream as DispatchRound).p50FromReceiptMs
        && ours.p99FromReceiptMs <= (medians.jetstream as DispatchRound).p99FromReceiptMs,
    } : {}),
    'all dispatched': (bySide.get('brainstem') ?? []).every((r) => r.allDispatched),
  };
  const rows = [...bySide.keys()].map((side) => [
    LABELS[side], ...COLUMNS.map((c) => formatNumber((medians[side] as DispatchRound)[c.key], c.digits ?? 0)),
  ]);
  process.stdout.write(`\nQ2 dispatch latency: ${RATE} tasks/s, one waiting pull, ${tasks} tasks (first ${WARMUP_MS / 1000} s not counted) — medians of ${rounds}\n`);
  process.stdout.write(`${table(['side', ...COLUMNS.map((c) => c.label)], rows)}\n`);
  for (const [name, value] of Object.entries(ratios)) process.stdout.write(`  ${name}: ${formatNumber(value, 2)}\n`);
  for (const [name, ok] of Object.entries(targets)) process.stdout.write(`  target ${name}: ${ok ? 'met' : 'NOT met'}\n`);
  const summary = { scenario: 'Q2', rate: RATE, tasks, rounds, medians, perRound: Object.fromEntries(bySide), ratios, targets, loadavg: loads };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  return summary;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, quick: { type: 'boolean', default: false } } });
  runDispatchBench({ rounds: Number(values.rounds), quick: values.quick }).catch((err: unknown) => {
    process.stderr.write(`dispatch bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
