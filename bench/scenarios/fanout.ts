import { now, payloadBuilder, probeUntilSubscribed, sentAt, waitFor } from '../lib/clients.js';
import { MB, quantile } from '../lib/report.js';
import type { RunningServer } from '../lib/servers.js';
import { closeAll, connectMany, transportFor } from '../lib/transport.js';

export interface FanoutOptions {
  subscribers: number;
  payloadBytes: number;
  durationMs: number;
  /** Publisher flow control: at most this many messages not yet received by the slowest subscriber. */
  window: number;
  /**
   * Messages per second, 0 for as many as the window allows. At a fixed
   * rate every server batches alike, so its CPU per delivery compares
   * across servers and builds even when a busy machine starves the clients.
   */
  ratePerSecond?: number;
}

export interface FanoutResult extends Record<string, number | boolean> {
  published: number;
  publishedPerSecond: number;
  deliveredPerSecond: number;
  allDelivered: boolean;
  p50Ms: number;
  p99Ms: number;
  serverCpuPercent: number;
  /** Server CPU time per delivered message: what the machine's noise does not change much. */
  serverMicrosPerDelivery: number;
  clientCpuPercent: number;
  serverRssMB: number;
}

const TOPIC = 'bench.fanout';

/**
 * S1: one publisher, N subscribers of one topic. The publisher keeps at most
 * `window` messages ahead of the slowest subscriber (flow control), so what
 * is measured is sustained delivery, not how much a server can buffer.
 * Every subscriber parses every message it receives, as a real one would.
 * Latency is sampled on subscriber 0 (send to receive, same clock).
 */
export async function runFanout(server: RunningServer, options: FanoutOptions): Promise<FanoutResult> {
  const transport = transportFor(server);
  const subscribers = await connectMany(transport, options.subscribers);
  const publisher = await transport.connect();
  const latencies: number[] = [];
  let measuring = false;
  let blocked = false;
  let lastDeliveryAt = 0;

  let parsed = 0;
  const received = subscribers.map((client, i) => {
    const counter = { count: 0 };
    client.subscribe(TOPIC, (text) => {
      counter.count++;
      if (!measuring) return;
      if (JSON.parse(text) !== null) parsed++;
      lastDeliveryAt = now();
      if (i === 0) latencies.push(lastDeliveryAt - sentAt(text));
      if (blocked) {
        blocked = false;
        setImmediate(pump);
      }
    });
    return counter;
  });
  await probeUntilSubscribed(publisher, TOPIC, options.subscribers, (i) => received[i]?.count ?? 0);
  for (const counter of received) counter.count = 0;

  const payload = payloadBuilder(options.payloadBytes);
  let published = 0;
  let stopped = false;
  let stoppedAt = 0;
  const slowest = () => {
    let min = Infinity;
    for (const counter of received) if (counter.count < min) min = counter.count;
    return min;
  };
  function pump(): void {
    if (stopped) return;
    const floor = slowest();
    const rate = options.ratePerSecond ?? 0;
    const due = rate > 0 ? Math.floor(((now() - start) * rate) / 1000) : Infinity;
    while (published - floor < options.window && publisher.bufferedAmount < MB && published < due) {
      const t = now();
      if (t - start >= options.durationMs) {
        stopped = true;
        stoppedAt = t;
        return;
      }
      publisher.publish(TOPIC, payload(published, t));
      published++;
    }
    blocked = rate === 0 || published - floor >= options.window;
  }

  const serverCpu0 = server.cpuSeconds();
  const clientCpu0 = process.cpuUsage();
  measuring = true;
  const start = now();
  // A safety net for a publisher blocked on its own socket buffer rather than on the window.
  // At a fixed rate, it is also the pacing timer.
  const nudge = setInterval(() => { if (!stopped) pump(); }, options.ratePerSecond ? 1 : 5);
  pump();
  await waitFor(() => stopped, options.durationMs + 5000);
  clearInterval(nudge);
  const allDelivered = await waitFor(() => received.every((counter) => counter.count === published), 15_000);
  const elapsed = now() - start;
  const serverCpu = server.cpuSeconds() - serverCpu0;
  const clientCpu = process.cpuUsage(clientCpu0);
  const totalDelivered = received.reduce((sum, counter) => sum + counter.count, 0);
  const serverRss = server.rss();
  await closeAll([...subscribers, publisher]);

  latencies.sort((a, b) => a - b);
  return {
    published,
    publishedPerSecond: published / ((stoppedAt - start) / 1000),
    deliveredPerSecond: totalDelivered / ((lastDeliveryAt - start) / 1000),
    allDelivered: allDelivered && parsed === totalDelivered,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    serverCpuPercent: (serverCpu / (elapsed / 1000)) * 100,
    serverMicrosPerDelivery: (serverCpu * 1e6) / totalDelivered,
    clientCpuPercent: ((clientCpu.user + clientCpu.system) / 1000 / elapsed) * 100,
    serverRssMB: serverRss / MB,
  };
}
