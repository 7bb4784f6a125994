import t from 'tap';
import { bearer, edgeConfig, tokenSpec } from './helpers/edge.js';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';
import { startHttpUpstream } from './helpers/upstreams.js';
import { RecentDurations } from '../src/metrics/recent-durations.js';

const redis = await startRedis(t);

/** One sample's value from Prometheus text, or undefined when the series is absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const present = (match[2] ?? '').split(',').filter(Boolean);
    if (wanted.every((label) => present.includes(label)) && present.length === wanted.length) return Number(match[3]);
  }
  return undefined;
}

async function scrape(url: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(`${url}/metrics`, { headers });
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return res.text();
}

t.test('after a scripted load, /metrics counts what happened', async (t) => {
  const upstream = await startHttpUpstream(t);
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    queueBackoffMs: 1,
    edge: edgeConfig({ proxy: [{ prefix: '/llm', upstream: upstream.url, websocket: false, auth: false, rewritePrefix: '' }] }),
  });
  const before = await scrape(gw.httpUrl);
  t.equal(sample(before, 'brainstem_bus_connections'), 0);
  t.equal(sample(before, 'brainstem_bus_published_total'), 0);
  t.ok(sample(before, 'process_cpu_user_seconds_total') !== undefined, 'prom-client process defaults, unprefixed');
  t.match(before, /# HELP brainstem_queue_wait_seconds /, 'every metric has its HELP');

  const subA = await TestSocket.open(`${gw.busUrl}?name=a`);
  const subB = await TestSocket.open(`${gw.busUrl}?name=b`);
  const pub = await TestSocket.open(`${gw.busUrl}?name=pub`);
  t.teardown(() => [subA, subB, pub].forEach((socket) => socket.close()));
  await subA.call({ action: 'subscribe', topic: 'load.*' });
  await subB.call({ action: 'subscribe', topic: 'load.one' });

  // 5 publishes: 5 to A, 3 of them (load.one) to B as well.
  for (let i = 0; i < 5; i++) await pub.call({ action: 'publish', message: { type: i < 3 ? 'load.one' : 'load.two', payload: i } });
  for (let i = 0; i < 5; i++) await subA.event();
  for (let i = 0; i < 3; i++) await subB.event('load.one');

  // Three tasks: two completed, one failed for good (one attempt).
  const worker = await TestSocket.open(`${gw.busUrl}?name=worker`);
  t.teardown(() => worker.close());
  for (let i = 0; i < 3; i++) {
    await worker.call({ action: 'enqueue', queue: 'render', task: { i }, opts: { attempts: 1 } });
  }
  for (let i = 0; i < 3; i++) worker.send({ action: 'pull', queue: 'render' });
  const tasks = [];
  for (let i = 0; i < 3; i++) tasks.push(((await worker.next((f) => 'task' in f)).task) as { id: string });
  await worker.call({ action: 'ack', taskId: tasks[0]!.id, result: 1 });
  await worker.call({ action: 'ack', taskId: tasks[1]!.id, result: 2 });
  await worker.call({ action: 'fail', taskId: tasks[2]!.id, reason: 'no' });

  const proxied = await fetch(`${gw.httpUrl}/llm/x`);
  t.equal(proxied.status, 200);
  const beat = await fetch(`${gw.httpUrl}/heartbeat`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pid: process.pid, name: 'tts' }),
  });
  t.equal(beat.status, 200);

  // The gateway's own events count as published: 2 queue.completed, 1 queue.failed, 1 queue.dead, 1 heartbeat.ping, 1 service.up.
  // Queue counts are read from Redis at most every 5 s: the first scrape's are renewed within that.
  let text = '';
  await until(async () => {
    text = await scrape(gw.httpUrl);
    return sample(text, 'brainstem_queue_tasks', { queue: 'render', state: 'failed' }) === 1;
  }, 15_000);
  t.equal(sample(text, 'brainstem_bus_connections'), 4);
  t.equal(sample(text, 'brainstem_bus_published_total'), 5 + 2 + 1 + 1 + 1 + 1);
  t.equal(sample(text, 'brainstem_bus_delivered_total'), 5 + 3, 'event frames sent, tasks not counted');
  t.equal(sample(text, 'brainstem_bus_slow_consumers_total'), 0);
  t.equal(sample(text, 'brainstem_queue_completed_total', { queue: 'render' }), 2);
  t.equal(sample(text, 'brainstem_queue_wait_seconds_count', { queue: 'render' }), 3, 'one wait per delivery');
  t.equal(sample(text, 'brainstem_queue_run_seconds_count', { queue: 'render' }), 3, 'one run per settled delivery');
  t.equal(sample(text, 'brainstem_queue_tasks', { queue: 'render', state: 'failed' }), 1);
  t.equal(sample(text, 'brainstem_queue_tasks', { queue: 'render', state: 'waiting' }), 0);
  t.equal(sample(text, 'brainstem_queue_tasks', { queue: 'render', state: 'active' }), 0);
  t.equal(sample(text, 'brainstem_heartbeat_instances', { name: 'tts', status: 'alive' }), 1);
  t.equal(sample(text, 'brainstem_proxy_requests_total', { route: '/llm', code: '200' }), 1);
  t.notOk(/taskId|clientId/.test(text), 'no per-task or per-client labels');
});

t.test('two gateways on one Redis: the shared queue figures come from one of them', async (t) => {
  const a = await startGateway(t, { redisUrl: redis.url, busClusterChannel: 'metrics-two' });
  const b = await startGateway(t, { redisUrl: redis.url, busClusterChannel: 'metrics-two' });
  const client = await TestSocket.open(a.busUrl);
  t.teardown(() => client.close());
  await client.call({ action: 'enqueue', queue: 'shared.q', task: {} });
  const [textA, textB] = [await scrape(a.httpUrl), await scrape(b.httpUrl)];
  const reported = [textA, textB].map((text) => sample(text, 'brainstem_queue_tasks', { queue: 'shared.q', state: 'waiting' }));
  t.same(reported.filter((value) => value !== undefined), [1], 'the waiting task is reported once across both gateways');
  t.ok(sample(textA, 'brainstem_bus_connections') !== undefined && sample(textB, 'brainstem_bus_connections') !== undefined,
    'each gateway reports its own connections');
});

t.test('with tokens on, /metrics needs an admin token', async (t) => {
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    edge: edgeConfig({ tokens: [tokenSpec('svc', 'svc-secret', { publish: ['>'] }), tokenSpec('ops', 'ops-secret', { admin: true })] }),
  });
  t.equal((await fetch(`${gw.httpUrl}/metrics`)).status, 401);
  t.equal((await fetch(`${gw.httpUrl}/metrics`, { headers: bearer('svc-secret') })).status, 403);
  const ok = await fetch(`${gw.httpUrl}/metrics`, { headers: bearer('ops-secret') });
  t.equal(ok.status, 200);
  t.match(ok.headers.get('content-type'), /^text\/plain/);
});

t.test('recent durations: p50 and p95 over the window only', async (t) => {
  const recent = new RecentDurations(60_000, 100);
  t.same(recent.quantiles('q', 0), { count: 0, p50: null, p95: null });
  for (let ms = 1; ms <= 20; ms++) recent.add('q', ms, 1000);
  t.same(recent.quantiles('q', 1000), { count: 20, p50: 10, p95: 19 });
  recent.add('q', 500, 70_000);
  t.same(recent.quantiles('q', 70_000), { count: 1, p50: 500, p95: 500 }, 'older samples left the window');
  for (let i = 0; i < 150; i++) recent.add('r', i, 0);
  t.equal(recent.quantiles('r', 0).count, 100, 'bounded per key');
  t.same(recent.quantiles('r', 0), { count: 100, p50: 99, p95: 144 }, 'the newest kept: 50 to 149');
  for (let i = 0; i < 30; i++) recent.add('s', i, i * 1000);
  t.same(recent.quantiles('s', 65_000), { count: 25, p50: 17, p95: 28 }, 'a ring that grew drops its oldest by time: 5 to 29 s are in the last minute');
});
