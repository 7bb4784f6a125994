import { now, payloadBuilder, probeUntilSubscribed, sentAt, sleep, waitFor } from '../lib/clients.js';
import { MB, quantile } from '../lib/report.js';
import type { RunningServer } from '../lib/servers.js';
import { transportFor, type BenchClient } from '../lib/transport.js';

export interface LatencyOptions {
  ratePerSecond: number;
  durationMs: number;
  /** Sent at the same rate first and not counted: lets the server's JIT settle. */
  warmupMs: number;
  payloadBytes: number;
}

export interface LatencyResult extends Record<string, number | boolean> {
  sent: number;
  lost: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  serverRssMB: number;
}

const TOPIC = 'bench.latency';

/**
 * Sends `count` messages at `ratePerSecond`, paced on a 1 ms timer (each
 * tick sends what is due), and records each one's send-to-receive time.
 */
async function paced(
  publisher: BenchClient,
  payload: (seq: number, t: number) => string,
  ratePerSecond: number,
  durationMs: number,
): Promise<number> {
  const count = Math.round((ratePerSecond * durationMs) / 1000);
  let sent = 0;
  const start = now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(count, Math.floor(((now() - start) * ratePerSecond) / 1000));
      while (sent < due) {
        publisher.publish(TOPIC, payload(sent, now()));
        sent++;
      }
      if (sent >= count) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  return count;
}

/** S2: one publisher, one subscriber, a steady rate; latency percentiles. */
export async function runLatency(server: RunningServer, options: LatencyOptions): Promise<LatencyResult> {
  const transport = transportFor(server);
  const subscriber = await transport.connect();
  const publisher = await transport.connect();
  let received = 0;
  let recording = false;
  const latencies: number[] = [];
  subscriber.subscribe(TOPIC, (text) => {
    received++;
    if (recording) latencies.push(now() - sentAt(text));
  });
  await probeUntilSubscribed(publisher, TOPIC, 1, () => received);

  const payload = payloadBuilder(options.payloadBytes);
  if (options.warmupMs > 0) {
    const warm = received + (await paced(publisher, payload, options.ratePerSecond, options.warmupMs));
    await waitFor(() => received >= warm, 5000);
    await sleep(100);
  }
  recording = true;
  const sent = await paced(publisher, payload, options.ratePerSecond, options.durationMs);
  await waitFor(() => latencies.length >= sent, 5000);
  recording = false;
  const serverRss = server.rss();
  await Promise.all([subscriber.close(), publisher.close()]);

  latencies.sort((a, b) => a - b);
  return {
    sent,
    lost: sent - latencies.length,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    p999Ms: quantile(latencies, 0.999),
    maxMs: latencies[latencies.length - 1] ?? Number.NaN,
    serverRssMB: serverRss / MB,
  };
}
