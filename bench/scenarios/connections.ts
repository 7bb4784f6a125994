import { now, payloadBuilder, probeUntilSubscribed, sleep, waitFor } from '../lib/clients.js';
import { MB, median } from '../lib/report.js';
import type { RunningServer } from '../lib/servers.js';
import { closeAll, connectMany, transportFor } from '../lib/transport.js';

/** When issue 19 reads the RSS: what a user sees shortly after the connections, not after minutes of settling. */
const RSS_AFTER_CONNECT_MS = 10_000;

export interface ConnectionsOptions {
  connections: number;
  broadcasts: number;
  payloadBytes: number;
  /**
   * Idle seconds after the broadcasts before the settled RSS reading (0: no
   * such reading). A Node server keeps the young generation a burst of
   * allocation grew (start-up, 5,000 handshakes) until V8's memory reducer
   * runs in the idle process: 55-60 s after the connections, here.
   */
  settleSeconds: number;
}

export interface ConnectionsResult extends Record<string, number | boolean> {
  connections: number;
  rssBeforeMB: number;
  rssIdleMB: number;
  /** 10 s after the last connection opened, before any broadcast. */
  rss10sMB: number;
  rssAfterMB: number;
  /** With the connections, after settleSeconds without traffic; NaN without a settle time. */
  rssSettledMB: number;
  bytesPerConnection: number;
  connectSeconds: number;
  broadcastMedianMs: number;
  broadcastMaxMs: number;
  allReached: boolean;
}

const SHARED = 'bench.all';

/**
 * S3: many idle subscribers, each on a topic of its own and on one shared
 * topic, then a few broadcasts on the shared one: the time from send until
 * the last subscriber has it, and the server's RSS before the connections,
 * with them idle, and after the broadcasts.
 */
export async function runConnections(server: RunningServer, options: ConnectionsOptions): Promise<ConnectionsResult> {
  const transport = transportFor(server);
  await sleep(500);
  const rssBefore = server.rss();
  const connectStart = now();
  const subscribers = await connectMany(transport, options.connections);
  const connectedAt = now();
  const connectSeconds = (connectedAt - connectStart) / 1000;
  const publisher = await transport.connect();
  let reached = 0;
  let lastAt = 0;
  const received = subscribers.map((client, i) => {
    const counter = { count: 0 };
    const onMessage = () => {
      counter.count++;
      reached++;
      lastAt = now();
    };
    client.subscribe(`bench.client.${i}`, onMessage);
    client.subscribe(SHARED, onMessage);
    return counter;
  });
  await probeUntilSubscribed(publisher, SHARED, options.connections, (i) => received[i]?.count ?? 0, 120_000);
  await sleep(1000);
  const rssIdle = server.rss();
  await sleep(Math.max(0, connectedAt + RSS_AFTER_CONNECT_MS - now()));
  const rss10s = server.rss();

  const payload = payloadBuilder(options.payloadBytes);
  const times: number[] = [];
  let allReached = true;
  for (let b = 0; b < options.broadcasts; b++) {
    reached = 0;
    const sentAt = now();
    publisher.publish(SHARED, payload(b, sentAt));
    const ok = await waitFor(() => reached >= options.connections, 30_000, 1);
    allReached &&= ok;
    times.push(ok ? lastAt - sentAt : Number.NaN);
    await sleep(300);
  }
  const rssAfter = server.rss();
  let rssSettled = Number.NaN;
  if (options.settleSeconds > 0) {
    await sleep(options.settleSeconds * 1000);
    rssSettled = server.rss();
  }
  await closeAll([...subscribers, publisher]);

  return {
    connections: options.connections,
    rssBeforeMB: rssBefore / MB,
    rssIdleMB: rssIdle / MB,
    rss10sMB: rss10s / MB,
    rssAfterMB: rssAfter / MB,
    rssSettledMB: rssSettled / MB,
    bytesPerConnection: (rssIdle - rssBefore) / options.connections,
    connectSeconds,
    broadcastMedianMs: median(times),
    broadcastMaxMs: Math.max(...times),
    allReached,
  };
}
