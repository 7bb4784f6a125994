import { once } from 'node:events';
import { Redis } from 'ioredis';
import t from 'tap';
import { spawnGatewayProcess, type GatewayProcess } from './helpers/process.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

type Teardown = { teardown(fn: () => unknown): void };
type Event = { type: string; payload: unknown; offset?: string };

const BUS_HISTORY = JSON.stringify([{ topics: 'orders.>', maxEvents: 100_000 }]);
const STREAM_KEY = 'brainstem:bus:history:orders.>';

/** A real gateway process on the given Redis, with the file's retention rule. */
function spawnGateway(t: Teardown, redisUrl: string): Promise<GatewayProcess> {
  return spawnGatewayProcess(t, redisUrl, { BUS_HISTORY, BUS_CLUSTER_HEARTBEAT_MS: '200' });
}

async function open(t: Teardown, url: string): Promise<TestSocket> {
  const socket = await TestSocket.open(url);
  t.teardown(() => socket.close());
  return socket;
}

function eventsOf(socket: TestSocket): Event[] {
  return socket.received.filter((f) => 'event' in f).map((f) => f.event as Event);
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

t.test('a subscriber cut off mid-stream resumes across a gateway kill -9 and a Redis restart: all 1,000, in order, once', async (t) => {
  const redis = await startRedis(t);
  const first = await spawnGateway(t, redis.url);
  const pub = await open(t, first.busUrl);
  const sub = await open(t, first.busUrl);
  const start = await sub.call({ action: 'subscribe', topic: 'orders.>', last: 0 });

  // Every receipt means the event is in Redis.
  const receipts = Array.from({ length: 1000 }, (_, n) => pub.call({ action: 'publish', message: { type: 'orders.created', payload: n } }, `p${n}`));
  await until(() => eventsOf(sub).length >= 100);
  sub.ws.terminate();
  const before = eventsOf(sub);
  await Promise.all(receipts);

  const killed = once(first.child, 'exit');
  first.child.kill('SIGKILL');
  await killed;
  await redis.stop();
  await redis.restart();
  const second = await spawnGateway(t, redis.url);

  const resumed = await open(t, second.busUrl);
  const since = before[before.length - 1]?.offset ?? (start.offset as string);
  const receipt = await resumed.call({ action: 'subscribe', topic: 'orders.>', since });
  t.equal(receipt.gap, false);
  const all = [...before, ...eventsOf(resumed)];
  t.same(all.map((e) => e.payload), range(0, 1000), 'each event once, in publish order');
  t.equal(new Set(all.map((e) => e.offset)).size, 1000);
});

t.test('two gateways on one Redis: publish on A, resume on B, while A keeps publishing; stored once', async (t) => {
  const redis = await startRedis(t);
  const [a, b] = await Promise.all([spawnGateway(t, redis.url), spawnGateway(t, redis.url)]);
  if (!a || !b) throw new Error('gateways did not start');
  await until(async () => {
    const state = await (await fetch(`${b.httpUrl}/bus`)).json() as { cluster?: { instances: unknown[] } };
    return state.cluster?.instances.length === 2;
  }, 20_000);
  const pub = await open(t, a.busUrl);
  const sub = await open(t, b.busUrl);
  const total = 2000;
  let stored = 0;
  const publishing = (async () => {
    while (stored < total) {
      const batch = range(stored, Math.min(stored + 50, total));
      await Promise.all(batch.map((n) => pub.call({ action: 'publish', message: { type: 'orders.paid', payload: n } }, `p${n}`)));
      stored += batch.length;
    }
  })();
  await until(() => stored >= 500, 20_000);
  const receipt = await sub.call({ action: 'subscribe', topic: 'orders.paid', since: '0' });
  t.ok((receipt.replayed as number) >= 500, `replayed ${String(receipt.replayed)} on B while A went on`);
  await publishing;
  await until(() => eventsOf(sub).length >= total, 20_000);
  await pub.call({ action: 'publish', message: { type: 'orders.paid', payload: total } });
  await until(() => eventsOf(sub).some((e) => e.payload === total), 10_000);
  t.same(eventsOf(sub).map((e) => e.payload), range(0, total + 1), 'replay then live across gateways, each once, in order');

  const client = new Redis(redis.url);
  t.teardown(() => client.disconnect());
  t.equal(await client.xlen(STREAM_KEY), total + 1, 'each event stored once, by the gateway it was published on');
});
