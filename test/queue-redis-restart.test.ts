import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { connect, enqueueAll, missing, QUEUE, RECEIPTED, work } from './helpers/queue-load.js';
import { startRedis } from './helpers/redis.js';
import { until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;

t.test('a Redis restart (append-only file) under load: every receipted task arrives', async (t) => {
  const redis = await startRedis(t, { appendonly: true });
  // Leases longer than the wait below: a task may not rely on its lease expiring to come back.
  const gw = await startGateway(t, { redisUrl: redis.url, queueKeepCompleted: 100_000, queueLeaseMs: 60_000 });
  const worker = work(await connect(`${gw.busUrl}?name=worker`, t), 10);
  const producer = await connect(`${gw.busUrl}?name=producer`, t);
  let restarted: Promise<void> = Promise.resolve();
  const { receipted, enough } = enqueueAll(producer, () => {
    restarted = redis.stop().then(() => new Promise((r) => setTimeout(r, 300))).then(() => redis.restart());
  });
  await enough;
  await restarted;
  t.ok(worker.delivered.length < RECEIPTED, `Redis went down mid-work (${worker.delivered.length} delivered)`);
  await until(() => missing(receipted, worker.acked).length === 0, 30_000).catch(() => undefined);
  t.same(missing(receipted, worker.acked), [], `all ${receipted.size} receipted tasks were done, none missing`, {
    errors: worker.errors.slice(0, 5),
  });
  const countsOf = async () => ((await (await fetch(`${gw.httpUrl}/queues/${QUEUE}`)).json()) as Frame).counts as Frame;
  await until(async () => {
    const now = await countsOf();
    return now.waiting === 0 && now.active === 0;
  }, 20_000).catch(() => undefined);
  const counts = await countsOf();
  t.match(counts, { waiting: 0, active: 0, failed: 0 });
  t.ok((counts.completed as number) >= receipted.size, `Redis holds ${String(counts.completed)} completed`);
});
