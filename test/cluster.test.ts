import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import t from 'tap';
import { spawnGatewayProcess } from './helpers/process.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;
type Teardown = { teardown(fn: () => unknown): void };

interface Instance {
  child: ChildProcess;
  name: string;
  httpUrl: string;
  busUrl: string;
}

interface BusState {
  counters: { published: number; forwardedToPeers: number; receivedFromPeers: number };
  cluster?: { instanceId: string; instances: { id: string; self: boolean; port: number | null; patterns: number }[] };
}

/** A real gateway process on the shared Redis, with fast cluster beats and short leases. */
async function spawnInstance(t: Teardown, name: string, redisUrl: string, env: Record<string, string> = {}): Promise<Instance> {
  const gateway = await spawnGatewayProcess(t, redisUrl, {
    BUS_CLUSTER_HEARTBEAT_MS: '200', QUEUE_LEASE_MS: '1000', QUEUE_STALLED_CHECK_MS: '300', ...env,
  });
  return { ...gateway, name };
}

async function busState(instance: Instance): Promise<BusState> {
  return (await (await fetch(`${instance.httpUrl}/bus`)).json()) as BusState;
}

/** Waits until every instance lists exactly `count` instances in its `GET /bus`. */
async function clusterOf(instances: Instance[], count: number): Promise<void> {
  await until(async () => {
    const states = await Promise.all(instances.map(busState));
    // Formed: every instance knows every other, with the port it listens on.
    return states.every((s) => s.cluster?.instances.length === count && s.cluster.instances.every((i) => i.port !== null));
  }, 20_000);
}

/** Waits until `instance` knows that some other instance has `patterns` subscriptions in all. */
async function peersKnow(instance: Instance, patterns: number): Promise<void> {
  await until(async () => {
    const state = await busState(instance);
    const others = state.cluster?.instances.filter((i) => !i.self) ?? [];
    return others.reduce((sum, i) => sum + i.patterns, 0) === patterns;
  }, 10_000);
}

async function open(t: Teardown, instance: Instance, name: string): Promise<TestSocket> {
  const socket = await TestSocket.open(`${instance.busUrl}?name=${name}`);
  t.teardown(() => socket.close());
  return socket;
}

function eventsOf(socket: TestSocket, type: string): Frame[] {
  return socket.received.filter((f) => 'event' in f && (f.event as Frame).type === type);
}

/**
 * One cluster for the whole file (starting gateway processes is the slow
 * part): A and B first, C joins later; B leaves with SIGTERM, A dies with
 * kill -9.
 */
t.test('gateways on one Redis behave as one broker', async (t) => {
  const redis = await startRedis(t);
  const [a, b] = await Promise.all([spawnInstance(t, 'a', redis.url), spawnInstance(t, 'b', redis.url)]);
  if (!a || !b) throw new Error('instances did not start');
  await clusterOf([a, b], 2);

  await t.test('GET /bus shows the cluster\'s instances', async (t) => {
    const state = await busState(a);
    t.equal(state.cluster?.instances.length, 2);
    t.equal(state.cluster?.instances.filter((i) => i.self).length, 1, 'itself once, and the other');
    const ports = state.cluster?.instances.map((i) => i.port).sort();
    t.same(ports, [new URL(a.httpUrl).port, new URL(b.httpUrl).port].map(Number).sort(), 'with their ports');
  });

  await t.test('publish on A: the subscriber on B gets it once; subscribers on both get one copy each', async (t) => {
    const onB = await open(t, b, 'listener-b');
    const onA = await open(t, a, 'listener-a');
    const publisher = await open(t, a, 'publisher');
    // Two matching patterns on one connection: still one delivery to it.
    t.match(await onB.call({ action: 'subscribe', topic: 'news.*' }), { ok: true });
    t.match(await onB.call({ action: 'subscribe', topic: 'news.>' }), { ok: true });

    // The subscribe receipt waits until the other instances know the pattern: no sleep needed.
    t.match(await publisher.call({ action: 'publish', message: { type: 'news.flash', payload: { n: 1 } } }), { ok: true, delivered: 0 });
    t.match((await onB.event('news.flash')).event, { type: 'news.flash', source: 'publisher', payload: { n: 1 } }, 'published on A, received on B');
    // Barrier: an event published after it crosses Redis behind any copy of it.
    await publisher.call({ action: 'publish', message: { type: 'news.marker', payload: 1 } });
    t.match((await onB.next((f) => 'event' in f)).event, { type: 'news.marker' }, 'exactly once: the next event is the later one');

    t.match(await onA.call({ action: 'subscribe', topic: 'news.flash' }), { ok: true });
    await publisher.call({ action: 'publish', message: { type: 'news.flash', payload: { n: 2 } } });
    await onA.event('news.flash');
    await onB.event('news.flash');
    t.ok(await onA.nothing((f) => 'event' in f), 'the subscriber on A got one copy');
    await publisher.call({ action: 'publish', message: { type: 'news.marker', payload: 2 } });
    t.match((await onB.next((f) => 'event' in f)).event, { type: 'news.marker' }, 'the subscriber on B got one copy');

    for (let n = 0; n < 50; n++) publisher.send({ action: 'publish', message: { type: 'news.seq', payload: n } });
    await until(() => eventsOf(onB, 'news.seq').length === 50);
    t.same(eventsOf(onB, 'news.seq').map((f) => (f.event as Frame).payload), [...Array(50).keys()], 'in publish order across Redis');

    const reply = await fetch(`${b.httpUrl}/bus/publish`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ type: 'news.flash', payload: { n: 3 } }),
    });
    t.equal(reply.status, 202);
    t.match((await onA.event('news.flash')).event, { payload: { n: 3 } }, 'an HTTP publish on B reaches A');
    await onB.event('news.flash');
  });

  await t.test('only the patterns some instance needs cross Redis', async (t) => {
    const publisher = await open(t, a, 'publisher');
    const localOnly = await open(t, a, 'local');
    await localOnly.call({ action: 'subscribe', topic: 'local.work' });
    await peersKnow(a, 0);
    const before = (await busState(a)).counters.forwardedToPeers;
    for (let n = 0; n < 20; n++) await publisher.call({ action: 'publish', message: { type: 'local.work', payload: n } });
    await until(() => eventsOf(localOnly, 'local.work').length === 20);
    t.equal((await busState(a)).counters.forwardedToPeers, before, 'nobody on B wants local.work: nothing crossed');

    const onB = await open(t, b, 'remote');
    await onB.call({ action: 'subscribe', topic: 'local.work' });
    await publisher.call({ action: 'publish', message: { type: 'local.work', payload: 'now' } });
    await onB.event('local.work');
    t.equal((await busState(a)).counters.forwardedToPeers, before + 1, 'once B subscribes, one message per event crosses');

    await onB.call({ action: 'unsubscribe', topic: 'local.work' });
    await peersKnow(a, 0);
    await publisher.call({ action: 'publish', message: { type: 'local.work', payload: 'after' } });
    t.equal((await busState(a)).counters.forwardedToPeers, before + 1, 'after the unsubscribe nothing crosses again');
    t.ok(await onB.nothing((f) => 'event' in f));

    const temporary = await open(t, b, 'temporary');
    await temporary.call({ action: 'subscribe', topic: 'local.>' });
    await peersKnow(a, 1);
    temporary.close();
    await peersKnow(a, 0);
    t.pass('a closed connection\'s patterns are withdrawn from the other instances');
  });

  await t.test('a task enqueued on A is pulled on B', async (t) => {
    const producer = await open(t, a, 'producer');
    const receipt = await producer.call({ action: 'enqueue', queue: 'cluster.work', task: { n: 1 } });
    t.match(receipt, { ok: true, taskId: String });
    const worker = await open(t, b, 'worker-b');
    worker.send({ action: 'pull', queue: 'cluster.work', id: 'p1' });
    const pulled = await worker.next((f) => 'task' in f, 10_000);
    t.match(pulled.task, { id: receipt.taskId, queue: 'cluster.work', payload: { n: 1 } });
    t.match(await worker.call({ action: 'ack', taskId: receipt.taskId }), { ok: true });
  });

  const c = await spawnInstance(t, 'c', redis.url);

  await t.test('a new instance learns the existing subscriptions', async (t) => {
    const onA = await open(t, a, 'early');
    await onA.call({ action: 'subscribe', topic: 'agent.>' });
    await clusterOf([a, b, c], 3);
    await until(async () => ((await busState(c)).cluster?.instances.find((i) => i.port === Number(new URL(a.httpUrl).port))?.patterns ?? 0) >= 1);
    const late = await open(t, c, 'late');
    await late.call({ action: 'publish', message: { type: 'agent.reply', payload: 'hi' } });
    t.match((await onA.event('agent.reply')).event, { payload: 'hi' }, 'a publish on the newcomer reaches A');
  });

  await t.test('an instance stopped with SIGTERM says goodbye', async (t) => {
    const exited = once(b.child, 'exit');
    b.child.kill('SIGTERM');
    await exited;
    await clusterOf([a, c], 2);
    t.pass('B left GET /bus on A and C');
  });

  await t.test('kill -9 of A loses no receipted task, and A is forgotten', async (t) => {
    const producer = await open(t, a, 'producer');
    const leasedReceipt = await producer.call({ action: 'enqueue', queue: 'cluster.crash', task: { n: 2 } });
    const waitingReceipt = await producer.call({ action: 'enqueue', queue: 'cluster.crash', task: { n: 3 } });
    t.match([leasedReceipt, waitingReceipt], [{ ok: true }, { ok: true }], 'both receipted on A');
    const workerA = await open(t, a, 'worker-a');
    workerA.send({ action: 'pull', queue: 'cluster.crash' });
    const leased = await workerA.next((f) => 'task' in f, 10_000);
    t.match(leased.task, { id: leasedReceipt.taskId }, 'A leased one of them to its worker');
    const killed = once(a.child, 'exit');
    a.child.kill('SIGKILL');
    await killed;

    const workerC = await open(t, c, 'worker-c');
    const got: Frame[] = [];
    for (let i = 0; i < 2; i++) {
      workerC.send({ action: 'pull', queue: 'cluster.crash' });
      const frame = await workerC.next((f) => 'task' in f, 20_000);
      got.push(frame.task as Frame);
      await workerC.call({ action: 'ack', taskId: (frame.task as Frame).id as string });
    }
    t.same(got.map((task) => task.id).sort(), [leasedReceipt.taskId, waitingReceipt.taskId].sort(),
      'both arrive on C: the waiting one, and the leased one once its lease ran out');
    await clusterOf([c], 1);
    t.pass('its heartbeats stopped: C forgot A');
  });
});
