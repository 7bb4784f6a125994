import { Redis } from 'ioredis';
import t from 'tap';
import { HeartbeatMonitor, type DownReport } from '../src/heartbeat/heartbeat-monitor.js';
import { RedisHeartbeatStore } from '../src/heartbeat/redis-heartbeat-store.js';
import { startRedis } from './helpers/redis.js';

const TIMEOUT = 1000;
const quiet = { info() {}, warn() {}, error() {} };

/** A monitor as a gateway runs it, on a store shared with others; it never signals (stopping off). */
function monitorOn(t: { teardown(fn: () => unknown): void }, store: RedisHeartbeatStore, sessionId: string, downs: DownReport[]): HeartbeatMonitor {
  const monitor = new HeartbeatMonitor({
    store,
    sessionId,
    settings: { timeoutMs: TIMEOUT, checkIntervalMs: 60_000, stopEnabled: false, stopGraceMs: 0, warnCpuPercent: 0, warnMemoryBytes: 0 },
    limits: new Map(),
    publish() {},
    onDown: (report) => downs.push(report),
    log: quiet,
  });
  t.teardown(() => monitor.close());
  return monitor;
}

t.test('of two gateways sharing a store, the one a process beat to takes it down (its connections are linked there)', async (t) => {
  const redis = await startRedis(t);
  const client = new Redis(redis.url);
  t.teardown(() => client.quit());
  const store = new RedisHeartbeatStore(client);
  const downsA: DownReport[] = [];
  const downsB: DownReport[] = [];
  const a = monitorOn(t, store, 'gateway-a', downsA);
  const b = monitorOn(t, store, 'gateway-b', downsB);
  const now = Date.now();
  const beat = (pid: number, sessionId: string, last: number) => store.saveBeat({
    pid, last, name: `svc-${pid}`, sessionId, cpu: 0, memory: 0, netRx: 0, netTx: 0, startTime: null, local: true, proven: false, firstBeat: last,
  });
  await beat(4_000_001, 'gateway-a', now - 0.5 * TIMEOUT);
  await beat(4_000_002, 'gateway-gone', now - 3 * TIMEOUT);

  // Both gateways boot a full timeout before `now` (no deaf period left).
  const later = now + TIMEOUT;
  const fromB = await b.check(later + 1);
  t.same(fromB.map((r) => r.pid), [4_000_002], 'B leaves A\'s record to A, and takes down the one whose gateway is gone');
  const fromA = await a.check(later + 2);
  t.same(fromA.map((r) => r.pid), [4_000_001], 'A takes down its own');
  t.same(downsA.map((r) => r.pid), [4_000_001], 'onDown runs on A, where the process is linked');
  t.same(downsB.map((r) => r.pid), [4_000_002]);
});
