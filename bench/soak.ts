/**
 * `npm run soak`: memory discipline over time. The gateway runs in its own
 * process for `--minutes` (default 10) at `--rate` msg/s (default 2,000)
 * to 10 subscribers (half on `soak.*`, half on their exact topic), while
 * connections churn: every second `--churn` clients (default 5) connect,
 * subscribe to a topic of their own and to `soak.*`, and leave. Its RSS and
 * `GET /bus` are sampled every 10 s. It passes when nothing was lost, the
 * churned connections and their patterns are all gone at the end, and memory
 * does not grow:
 * - the live heap (heap in use after a full GC, from the gateway's
 *   `--trace-gc` log) at the end is within `--heap-tolerance-mb` (default 3)
 *   of the first full GC after one minute (V8's memory reducer runs one about
 *   100 s in); the one at the end is forced with SIGUSR2, which makes the
 *   gateway write a heap snapshot (after the last RSS sample: a snapshot
 *   leaves RSS about 100 MB higher);
 * - RSS over the last quarter stays within `--tolerance-mb` (default 10) of
 *   its peak in the first two minutes. RSS alone is no leak signal: V8
 *   shrinks the young generation when its memory reducer runs and grows it
 *   again under load (steps of 4 to 16 MB, up to 32 MB).
 *
 * Not part of the test suite. See bench/README.md.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type WebSocket from 'ws';
import { closeClients, openClient, publishFrameBuilder, sleep, subscribeFrame, waitFor, waitForQuiet } from './lib/clients.js';
import { formatNumber, load, log, MB, median, table } from './lib/report.js';
import { startBenchRedis, startServer } from './lib/servers.js';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    rate: { type: 'string', default: '2000' },
    churn: { type: 'string', default: '5' },
    'tolerance-mb': { type: 'string', default: '10' },
    'heap-tolerance-mb': { type: 'string', default: '3' },
  },
});
const minutes = Number(args.minutes);
const rate = Number(args.rate);
const churnPerSecond = Number(args.churn);
const toleranceMB = Number(args['tolerance-mb']);
const heapToleranceMB = Number(args['heap-tolerance-mb']);
const SUBSCRIBERS = 10;
const SAMPLE_MS = 10_000;
const TOPICS = ['soak.a', 'soak.b', 'soak.c', 'soak.d', 'soak.e'];

interface BusState {
  counters: { connections: number; published: number; delivered: number };
  subscriptions: Record<string, number>;
}

interface Sample {
  atSeconds: number;
  rssMB: number;
  connections: number;
  patterns: number;
  published: number;
  received: number;
}

interface FullGc {
  /** Milliseconds since the gateway process started. */
  atMs: number;
  /** Heap in use after the collection: what is live. */
  liveMB: number;
  forced: boolean;
}

function fullGcs(gcLog: string): FullGc[] {
  const lines = readFileSync(gcLog, 'utf8').matchAll(/\s(\d+) ms: Mark-Compact[^\n]*? -> ([\d.]+) \([^\n]*/g);
  return [...lines].map((m) => ({ atMs: Number(m[1]), liveMB: Number(m[2]), forced: m[0].includes('heap profiler') }));
}

/** Forces a full GC (SIGUSR2: the gateway writes a heap snapshot) and returns the live heap after it. */
async function forcedFullGcMB(pid: number, gcLog: string): Promise<number> {
  const forced = () => fullGcs(gcLog).filter((gc) => gc.forced);
  const before = forced().length;
  process.kill(pid, 'SIGUSR2');
  await waitFor(() => forced().length > before, 30_000, 100);
  return forced()[before]?.liveMB ?? Number.NaN;
}

async function busState(httpUrl: string): Promise<BusState> {
  return (await (await fetch(`${httpUrl}/bus`)).json()) as BusState;
}

async function main(): Promise<void> {
  log(`soak: ${minutes} min at ${rate} msg/s to ${SUBSCRIBERS} subscribers, ${churnPerSecond} connections churned per second, load ${load()}`);
  const redis = await startBenchRedis();
  const diagnostics = mkdtempSync(join(tmpdir(), 'brainstem-soak-'));
  const gcLog = join(diagnostics, 'gateway.log');
  const server = await startServer('brainstem', {
    redisUrl: redis.url,
    env: { LOG_LEVEL: 'warn' },
    nodeArgs: ['--trace-gc', '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${diagnostics}`],
    logFile: gcLog,
  });
  const httpUrl = `http://127.0.0.1:${server.port}`;
  const subscribers: WebSocket[] = [];
  const expected = new Array<number>(SUBSCRIBERS).fill(0);
  const counters = Array.from({ length: SUBSCRIBERS }, () => ({ count: 0 }));
  try {
    const publisher = await openClient(server.url, true);
    for (let i = 0; i < SUBSCRIBERS; i++) {
      const ws = await openClient(server.url, true);
      const counter = counters[i] as { count: number };
      ws.on('message', () => { counter.count++; });
      // Even subscribers take every topic through a wildcard, odd ones one exact topic.
      ws.send(subscribeFrame(i % 2 === 0 ? 'soak.*' : (TOPICS[i % TOPICS.length] as string)));
      subscribers.push(ws);
    }
    // Every subscription in place: probes on every topic until each subscriber has had one.
    const everyoneHasOne = () => counters.every((c) => c.count > 0);
    while (!everyoneHasOne()) {
      for (const topic of TOPICS) publisher.send(`{"action":"publish","message":{"type":"${topic}","payload":{"probe":true}}}`);
      await waitFor(everyoneHasOne, 200);
    }
    await waitForQuiet(SUBSCRIBERS, (i) => counters[i]?.count ?? 0);
    for (const counter of counters) counter.count = 0;

    const frames = TOPICS.map((topic) => publishFrameBuilder(topic, 256));
    const started = Date.now();
    const endAt = started + minutes * 60_000;
    let sent = 0;
    const publishTimer = setInterval(() => {
      const due = Math.floor(((Date.now() - started) * rate) / 1000);
      while (sent < due) {
        const topicIndex = sent % TOPICS.length;
        publisher.send((frames[topicIndex] as (seq: number, t: number) => string)(sent, 0));
        for (let i = 0; i < SUBSCRIBERS; i++) {
          if (i % 2 === 0 || i % TOPICS.length === topicIndex) expected[i] = (expected[i] ?? 0) + 1;
        }
        sent++;
      }
    }, 5);

    let churned = 0;
    const churnTimer = setInterval(() => {
      for (let c = 0; c < churnPerSecond; c++) {
        const id = churned++;
        void openClient(server.url, true).then((ws) => {
          ws.send(subscribeFrame(`soak.churn.${id}`));
          ws.send(subscribeFrame('soak.*'));
          setTimeout(() => ws.terminate(), 200 + (id % 5) * 100);
        }, () => undefined);
      }
    }, 1000);

    const samples: Sample[] = [];
    while (Date.now() < endAt) {
      await sleep(Math.min(SAMPLE_MS, endAt - Date.now()));
      const state = await busState(httpUrl);
      const sample = {
        atSeconds: Math.round((Date.now() - started) / 1000),
        rssMB: server.rss() / MB,
        connections: state.counters.connections,
        patterns: Object.keys(state.subscriptions).length,
        published: sent,
        received: counters.reduce((sum, c) => sum + c.count, 0),
      };
      samples.push(sample);
      log(`soak ${sample.atSeconds}s: RSS ${sample.rssMB.toFixed(1)} MB, ${sample.connections} connections, ${sample.patterns} patterns`);
    }
    const finalRss = server.rss() / MB;
    const heapAtEnd = await forcedFullGcMB(server.pid, gcLog);
    const heapEarly = fullGcs(gcLog).find((gc) => !gc.forced && gc.atMs >= 60_000)?.liveMB ?? Number.NaN;
    clearInterval(publishTimer);
    clearInterval(churnTimer);
    const totalExpected = expected.reduce((a, b) => a + b, 0);
    const allDelivered = await waitFor(() => counters.every((c, i) => c.count === expected[i]), 15_000);
    await sleep(1500);
    const final = await busState(httpUrl);

    const early = samples.filter((s) => s.atSeconds <= 120);
    const rssEarlyPeak = Math.max(...(early.length > 0 ? early : samples).map((s) => s.rssMB));
    const lastQuarterFrom = (minutes * 60 * 3) / 4;
    const late = median(samples.filter((s) => s.atSeconds >= lastQuarterFrom).map((s) => s.rssMB));
    const growth = late - rssEarlyPeak;
    const heapGrowth = heapAtEnd - heapEarly;
    const leftovers = final.counters.connections - (SUBSCRIBERS + 1);
    const churnPatterns = Object.keys(final.subscriptions).filter((p) => p.startsWith('soak.churn.')).length;

    const everyMinute = samples.filter((_, i) => (i + 1) % 6 === 0 || i === samples.length - 1);
    process.stdout.write(`\nsoak: ${minutes} min, ${rate} msg/s, ${SUBSCRIBERS} subscribers, ${churnPerSecond} connections/s churned (${churned} in all)\n`);
    process.stdout.write(`${table(['at', 'RSS MB', 'connections', 'patterns', 'published', 'received'], everyMinute.map((s) => [
      `${s.atSeconds} s`, s.rssMB.toFixed(1), String(s.connections), String(s.patterns), formatNumber(s.published), formatNumber(s.received),
    ]))}\n`);
    const verdict = {
      allDelivered,
      churnedConnectionsLeft: leftovers,
      churnedPatternsLeft: churnPatterns,
      rssEarlyPeakMB: rssEarlyPeak,
      rssLastQuarterMB: late,
      rssGrowthMB: growth,
      rssFinalMB: finalRss,
      liveHeapEarlyMB: heapEarly,
      liveHeapAtEndMB: heapAtEnd,
      liveHeapGrowthMB: heapGrowth,
      pass: allDelivered && leftovers === 0 && churnPatterns === 0 && growth <= toleranceMB
        && Number.isFinite(heapGrowth) && heapGrowth <= heapToleranceMB,
    };
    process.stdout.write(`  delivered ${formatNumber(counters.reduce((s, c) => s + c.count, 0))} of ${formatNumber(totalExpected)}: ${allDelivered ? 'all' : 'NOT all'}\n`);
    process.stdout.write(`  churned connections left: ${leftovers}, their patterns left: ${churnPatterns}\n`);
    process.stdout.write(`  RSS peak in the first 2 min ${rssEarlyPeak.toFixed(1)} MB, last quarter ${late.toFixed(1)} MB: growth ${growth.toFixed(1)} MB (tolerance ${toleranceMB})\n`);
    process.stdout.write(`  live heap at the first full GC after 1 min ${heapEarly.toFixed(1)} MB, at the end ${heapAtEnd.toFixed(1)} MB: growth ${heapGrowth.toFixed(1)} MB (tolerance ${heapToleranceMB})\n`);
    process.stdout.write(`  ${verdict.pass ? 'PASS' : 'FAIL'}\n`);
    process.stdout.write(`${JSON.stringify({ scenario: 'soak', minutes, rate, subscribers: SUBSCRIBERS, churnPerSecond, churned, samples, verdict, loadavg: load() })}\n`);
    await closeClients([publisher, ...subscribers]);
    process.exitCode = verdict.pass ? 0 : 1;
  } finally {
    await server.stop();
    await redis.stop();
    rmSync(diagnostics, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`soak failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
