/**
 * The batched ack alone: Redis's time (`INFO commandstats`, evalsha) and
 * this process's CPU per completion, 10,000 held tasks completed through
 * the adapter's `completeMany` 10 at a time, on a fresh bench Redis per
 * round. `--adapter FILE` measures another build's bullmq-adapter.js in
 * the same rounds, alternating, so a lever of the adapter is seen without
 * the rest of the gateway's noise.
 *
 *   npm run build && node dist/bench/completions.js [--rounds 4] [--adapter .ab/s0/dist/src/queues/bullmq-adapter.js]
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import * as thisAdapter from '../src/queues/bullmq-adapter.js';
import { median } from './lib/report.js';
import { startBenchRedis } from './lib/servers.js';

type Adapter = Pick<typeof thisAdapter, 'jobHost' | 'moveManyToActive' | 'completeMany' | 'GATEWAY_WORKER_NAME'>;

const TASKS = 10_000;
const PER_CALL = 10;
/** Batched calls in flight at once, as several queues' ticks would have. */
const IN_FLIGHT = 20;

async function evalshaMicros(connection: Redis): Promise<number> {
  const info = await connection.info('commandstats');
  return Number(/cmdstat_evalsha:calls=\d+,usec=(\d+)/.exec(info)?.[1] ?? Number.NaN);
}

async function round(adapter: Adapter): Promise<{ redisMicros: number; clientMicros: number }> {
  const redis = await startBenchRedis();
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue('completions', { connection, prefix: 'bench', skipVersionCheck: true });
  const template = new Queue('template', { connection, prefix: 'bench-template', skipVersionCheck: true });
  try {
    const host = adapter.jobHost(template, queue, {
      prefix: 'bench', lockDuration: 30_000, stalledInterval: 1000, maxStalledCount: 5, name: adapter.GATEWAY_WORKER_NAME,
    });
    await queue.addBulk(Array.from({ length: TASKS }, (_, n) => ({
      name: 'task', data: { n }, opts: { attempts: 5, removeOnComplete: { count: 1000 }, jobId: `t${n}` },
    })));
    const held: thisAdapter.Completion[] = [];
    for (let n = 0; n < TASKS; n += PER_CALL) {
      const tokens = Array.from({ length: PER_CALL }, (_, k) => `lock-${n + k}`);
      const fetched = await adapter.moveManyToActive(host, tokens);
      fetched.forEach((each, k) => {
        if (each instanceof Error || !each.job) throw new Error(`task ${n + k} was not fetched`);
        held.push({ job: each.job, result: null, token: tokens[k] as string, fetchNext: false });
      });
    }
    const before = await evalshaMicros(connection);
    const cpu = process.cpuUsage();
    const calls: Promise<unknown[]>[] = [];
    for (let n = 0; n < held.length; n += PER_CALL) {
      calls.push(adapter.completeMany(host, held.slice(n, n + PER_CALL)));
      if (calls.length >= IN_FLIGHT) await Promise.all(calls.splice(0));
    }
    await Promise.all(calls);
    const used = process.cpuUsage(cpu);
    const replies = await queue.getJobCounts('completed', 'active');
    if (replies.active !== 0) throw new Error(`${replies.active} tasks were left active`);
    return { redisMicros: ((await evalshaMicros(connection)) - before) / TASKS, clientMicros: (used.user + used.system) / TASKS };
  } finally {
    await queue.close();
    await template.close();
    connection.disconnect();
    await redis.stop();
  }
}

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '4' }, adapter: { type: 'string' } } });
const sides: [string, Adapter][] = [['this build', thisAdapter]];
if (values.adapter) sides.push([values.adapter, await import(pathToFileURL(resolve(values.adapter)).href) as Adapter]);
const results = new Map<string, { redisMicros: number; clientMicros: number }[]>(sides.map(([label]) => [label, []]));
for (let r = 0; r < Number(values.rounds); r++) {
  // Alternate who goes first: the machine's state drifts over a run.
  for (const [label, adapter] of r % 2 === 0 ? sides : [...sides].reverse()) {
    const result = await round(adapter);
    results.get(label)?.push(result);
    process.stdout.write(`round ${r + 1} ${label}: Redis ${result.redisMicros.toFixed(1)} µs, client ${result.clientMicros.toFixed(1)} µs a completion\n`);
  }
}
for (const [label, rounds] of results) {
  process.stdout.write(`${label}: medians Redis ${median(rounds.map((x) => x.redisMicros)).toFixed(1)} µs, client ${median(rounds.map((x) => x.clientMicros)).toFixed(1)} µs a completion (${PER_CALL} a call)\n`);
}
