/**
 * T1–T3, streamed task output (bus protocol v3), through the TypeScript
 * client as a service would use it:
 * - T1: chunk latency from `task.write` to each follower's iterator, p50
 *   and p99, one worker writing 64-byte chunks at 1,000/s to 10 followers;
 * - T2: one binary stream of 16 KiB chunks (audio-sized) to one follower:
 *   MB/s, and the gateway's CPU per MB;
 * - T3: a follower that stops reading for 30 s (10 s with --quick) while
 *   the worker writes 16 KiB chunks, awaiting each receipt: the gateway's
 *   RSS growth against the window's bytes, what the worker wrote meanwhile
 *   (slowed, not failed), and on resume whether the follower got every
 *   chunk in order.
 *
 * Run alone: npm run build && node dist/bench/scenarios/streams.js [--quick]
 * (`npm run bench` runs it as T1, T2, T3.)
 */
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { BrokerClient, type Task } from '../../src/client/index.js';
import { closeClients, now, openClient, sleep, waitFor } from '../lib/clients.js';
import { formatNumber, load, log, MB, medianOf, quantile, table } from '../lib/report.js';
import { startBenchRedis, startServer, type BenchRedis, type RunningServer } from '../lib/servers.js';

export interface StreamsOptions {
  redis?: BenchRedis;
  rounds?: number;
  quick?: boolean;
  only?: Set<string>;
}

const FOLLOWERS = 10;
const RATE = 1000;
const SMALL_BYTES = 64;
const AUDIO_BYTES = 16 * 1024;
/** The gateway's default STREAM_WINDOW_BYTES. */
const WINDOW_BYTES = 4 * MB;
/** Binary writes a T2 worker keeps in flight. */
const IN_FLIGHT = 32;

function client(url: string, id: string): BrokerClient {
  const c = new BrokerClient({ url, id });
  c.on('error', () => {});
  return c;
}

/** A text chunk of exactly SMALL_BYTES of JSON carrying its write time. */
function smallChunk(t: number): string {
  const stamp = `${t.toFixed(3)}:`;
  return `${stamp}${'x'.repeat(SMALL_BYTES - stamp.length - 2)}`;
}

async function withGateway<R>(redis: BenchRedis, prefix: string, body: (server: RunningServer) => Promise<R>): Promise<R> {
  const server = await startServer('brainstem', { redisUrl: redis.url, env: { LOG_LEVEL: 'warn', QUEUE_PREFIX: prefix } });
  try {
    return await body(server);
  } finally {
    await server.stop();
  }
}

type LatencyRound = { chunks: number; p50Ms: number; p99Ms: number; maxMs: number; complete: boolean };

async function latencyRound(redis: BenchRedis, round: number, seconds: number): Promise<LatencyRound> {
  return withGateway(redis, `t1r${round}`, async (server) => {
    const worker = client(server.url, 't1-worker');
    const followers = Array.from({ length: FOLLOWERS }, (_, i) => client(server.url, `t1-follower-${i}`));
    try {
      await Promise.all([worker, ...followers].map((c) => c.connect()));
      const total = RATE * seconds;
      const latencies: number[] = [];
      const warmed = new Set<number>();
      let release!: () => void;
      const everyoneFollows = new Promise<void>((resolve) => { release = resolve; });
      worker.work('t1.tokens', async (task: Task) => {
        await task.write!('warm-up');
        await everyoneFollows;
        const writes: Promise<number>[] = [];
        const start = now();
        for (let i = 0; i < total; i++) {
          const due = start + (i * 1000) / RATE;
          const wait = due - now();
          if (wait > 1) await sleep(wait);
          writes.push(task.write!(smallChunk(now())));
        }
        await Promise.all(writes);
        return 'done';
      });
      const { taskId } = await worker.enqueue('t1.tokens', 1, { stream: true });
      const reading = followers.map(async (follower, i) => {
        let count = 0;
        for await (const item of follower.follow(taskId)) {
          if (item.end !== undefined) break;
          if (item.seq === 1) {
            warmed.add(i);
            if (warmed.size === FOLLOWERS) release();
            continue;
          }
          latencies.push(now() - Number(String(item.data).split(':')[0]));
          count++;
        }
        return count;
      });
      const counts = await Promise.all(reading);
      latencies.sort((a, b) => a - b);
      return {
        chunks: total,
        p50Ms: quantile(latencies, 0.5),
        p99Ms: quantile(latencies, 0.99),
        maxMs: latencies[latencies.length - 1] ?? Number.NaN,
        complete: counts.every((count) => count === total),
      };
    } finally {
      await Promise.all([worker, ...followers].map((c) => c.close()));
    }
  });
}

type ThroughputRound = { mb: number; mbPerSecond: number; gatewayCpuMsPerMb: number; complete: boolean };

async function throughputRound(redis: BenchRedis, round: number, mb: number): Promise<ThroughputRound> {
  return withGateway(redis, `t2r${round}`, async (server) => {
    const worker = client(server.url, 't2-worker');
    const follower = client(server.url, 't2-follower');
    try {
      await Promise.all([worker.connect(), follower.connect()]);
      const chunks = Math.round((mb * MB) / AUDIO_BYTES);
      const audio = new Uint8Array(AUDIO_BYTES).fill(0x5a);
      worker.work('t2.speech', async (task: Task) => {
        const inFlight = new Set<Promise<number>>();
        for (let i = 0; i < chunks; i++) {
          if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
          const write = task.write!(audio);
          inFlight.add(write);
          void write.finally(() => inFlight.delete(write));
        }
        await Promise.all(inFlight);
        return 'spoken';
      });
      const cpuBefore = server.cpuSeconds();
      const start = now();
      const { taskId } = await follower.enqueue('t2.speech', 1, { stream: true });
      let bytes = 0;
      let received = 0;
      for await (const item of follower.follow(taskId)) {
        if (item.end !== undefined) break;
        bytes += (item.data as Uint8Array).length;
        received++;
      }
      const seconds = (now() - start) / 1000;
      const megabytes = bytes / MB;
      return {
        mb: megabytes,
        mbPerSecond: megabytes / seconds,
        gatewayCpuMsPerMb: ((server.cpuSeconds() - cpuBefore) * 1000) / megabytes,
        complete: received === chunks,
      };
    } finally {
      await Promise.all([worker.close(), follower.close()]);
    }
  });
}

type PausedRound = {
  pauseSeconds: number;
  writtenBeforePause: number;
  writtenDuringPause: number;
  writesFailed: number;
  /** Gateway RSS growth during the pause, against the window's bytes. */
  rssGrowthMb: number;
  windowMb: number;
  /** Chunks per second the worker wrote while the follower read, and while it did not. */
  writesPerSecondReading: number;
  writesPerSecondPaused: number;
  inOrderAfterResume: boolean;
};

/** Seqs of the chunks a raw follower receives (binary frames: 4-byte length, JSON header, bytes). */
function seqsOf(ws: WebSocket, taskId: string): { seqs: number[]; ended: () => boolean } {
  const seqs: number[] = [];
  let end = false;
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    const headerLength = isBinary ? data.readUInt32BE(0) : 0;
    const text = isBinary ? data.subarray(4, 4 + headerLength).toString() : data.toString();
    const frame = JSON.parse(text) as { chunk?: { taskId: string; seq: number; end?: string } };
    if (frame.chunk?.taskId !== taskId) return;
    if (frame.chunk.end !== undefined) end = true;
    else seqs.push(frame.chunk.seq);
  });
  return { seqs, ended: () => end };
}

async function pausedRound(redis: BenchRedis, round: number, pauseSeconds: number): Promise<PausedRound> {
  return withGateway(redis, `t3r${round}`, async (server) => {
    const worker = client(server.url, 't3-worker');
    const raw: WebSocket[] = [];
    try {
      await worker.connect();
      const audio = new Uint8Array(AUDIO_BYTES).fill(0x33);
      let written = 0;
      let failed = 0;
      let writing = true;
      worker.work('t3.speech', async (task: Task) => {
        while (writing) {
          try {
            await task.write!(audio);
            written++;
          } catch {
            failed++;
            await sleep(10);
          }
        }
        return 'spoken';
      });
      const { taskId } = await worker.enqueue('t3.speech', 1, { stream: true });
      const follower = await openClient(server.url, true);
      raw.push(follower);
      const received = seqsOf(follower, taskId);
      follower.send(JSON.stringify({ action: 'follow', taskId, from: 1, id: 1 }));
      const readingSeconds = 3;
      await waitFor(() => written > 0, 10_000);
      const startReading = written;
      await sleep(readingSeconds * 1000);
      const writtenBeforePause = written;
      const socket = (follower as unknown as { _socket: Socket })._socket;
      socket.pause();
      const rssBefore = server.rss();
      let rssPeak = rssBefore;
      const deadline = now() + pauseSeconds * 1000;
      while (now() < deadline) {
        await sleep(250);
        rssPeak = Math.max(rssPeak, server.rss());
      }
      const writtenDuringPause = written - writtenBeforePause;
      socket.resume();
      writing = false;
      await waitFor(() => received.ended(), 60_000);
      const seqs = received.seqs;
      const inOrder = seqs.length === written && seqs.every((seq, i) => seq === i + 1);
      return {
        pauseSeconds,
        writtenBeforePause,
        writtenDuringPause,
        writesFailed: failed,
        rssGrowthMb: (rssPeak - rssBefore) / MB,
        windowMb: WINDOW_BYTES / MB,
        writesPerSecondReading: (writtenBeforePause - startReading) / readingSeconds,
        writesPerSecondPaused: writtenDuringPause / pauseSeconds,
        inOrderAfterResume: inOrder,
      };
    } finally {
      await closeClients(raw);
      await worker.close();
    }
  });
}

async function rounds<R extends Record<string, number | boolean>>(name: string, count: number, run: (round: number) => Promise<R>): Promise<R> {
  const results: R[] = [];
  for (let round = 0; round < count; round++) {
    log(`${name} round ${round + 1}/${count}, load ${load()}`);
    results.push(await run(round));
  }
  const median = medianOf(results);
  process.stdout.write(`${JSON.stringify({ scenario: name, ...median })}\n`);
  return median;
}

export async function runStreamsBench(options: StreamsOptions = {}): Promise<void> {
  const redis = options.redis ?? (await startBenchRedis());
  const count = options.rounds ?? 3;
  const only = options.only ?? new Set(['T1', 'T2', 'T3']);
  try {
    if (only.has('T1')) {
      const m = await rounds('T1', count, (round) => latencyRound(redis, round, options.quick ? 3 : 10));
      process.stdout.write(`\nT1 chunk latency, write → follower's iterator, ${RATE}/s of ${SMALL_BYTES} B to ${FOLLOWERS} followers (median of ${count})\n`);
      process.stdout.write(`${table(['chunks', 'p50 ms', 'p99 ms', 'max ms', 'all delivered'], [[
        formatNumber(m.chunks), formatNumber(m.p50Ms, 2), formatNumber(m.p99Ms, 2), formatNumber(m.maxMs, 1), formatNumber(m.complete),
      ]])}\n`);
    }
    if (only.has('T2')) {
      const m = await rounds('T2', count, (round) => throughputRound(redis, round, options.quick ? 32 : 128));
      process.stdout.write(`\nT2 one binary stream of ${AUDIO_BYTES / 1024} KiB chunks to one follower (median of ${count})\n`);
      process.stdout.write(`${table(['MB', 'MB/s', 'gateway CPU ms / MB', 'all delivered'], [[
        formatNumber(m.mb), formatNumber(m.mbPerSecond, 1), formatNumber(m.gatewayCpuMsPerMb, 1), formatNumber(m.complete),
      ]])}\n`);
    }
    if (only.has('T3')) {
      const m = await rounds('T3', count, (round) => pausedRound(redis, round, options.quick ? 10 : 30));
      process.stdout.write(`\nT3 a follower paused while the worker writes ${AUDIO_BYTES / 1024} KiB chunks, awaiting each receipt (median of ${count})\n`);
      process.stdout.write(`${table([
        'pause s', 'written before', 'written during pause', 'writes failed', 'gateway RSS growth MB', 'window MB',
        'writes/s reading', 'writes/s paused', 'every chunk in order after resume',
      ], [[
        formatNumber(m.pauseSeconds), formatNumber(m.writtenBeforePause), formatNumber(m.writtenDuringPause), formatNumber(m.writesFailed),
        formatNumber(m.rssGrowthMb, 1), formatNumber(m.windowMb), formatNumber(m.writesPerSecondReading), formatNumber(m.writesPerSecondPaused, 1),
        formatNumber(m.inOrderAfterResume),
      ]])}\n`);
    }
  } finally {
    if (!options.redis) await redis.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  runStreamsBench({ quick, rounds: quick ? 1 : 3 }).catch((err: unknown) => {
    process.stderr.write(`streams bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
