import { spawn } from 'node:child_process';
import { once } from 'node:events';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import type { BuildOptions } from '../app.js';
import { busWorker, type BusWorker } from './helpers/bus-worker.js';
import { startGateway, type RunningGateway } from './helpers/gateway.js';
import { TestSocket, until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;
type Teardown = { teardown(fn: () => unknown): void };

/** The figures: stale after 1.5 s without a beat, checked every 0.5 s. */
const LIVENESS: BuildOptions = { heartbeatTimeoutMs: 1500, heartbeatCheckIntervalMs: 500, heartbeatStopGraceMs: 400 };

interface ConnectionView { clientId: string; pid: number | null; linked: boolean; subscriptions: string[]; pulls: Frame[]; tasks: Frame[] }

async function connectionsOf(gw: RunningGateway, service: string): Promise<ConnectionView[]> {
  const res = await fetch(`${gw.httpUrl}/services`);
  const { services } = await res.json() as { services: { name: string; connections: ConnectionView[] }[] };
  return services.find((s) => s.name === service)?.connections ?? [];
}

async function connectionView(gw: RunningGateway, service: string, clientId: string): Promise<ConnectionView | undefined> {
  return (await connectionsOf(gw, service)).find((c) => c.clientId === clientId);
}

async function enqueue(gw: RunningGateway, queue: string): Promise<string> {
  const producer = await TestSocket.open(`${gw.busUrl}?name=producer`);
  const receipt = await producer.call({ action: 'enqueue', queue, task: { job: 1 }, opts: { attempts: 3 } });
  producer.close();
  if (receipt.ok !== true) throw new Error(`enqueue refused: ${JSON.stringify(receipt)}`);
  return receipt.taskId as string;
}

/** A worker process that beat, pulled and holds `taskId`, linked to its heartbeat. */
async function holdingWorker(t: Test, gw: RunningGateway, queue: string, taskId: string): Promise<BusWorker> {
  const worker = await busWorker(t, gw, 'lapser');
  t.equal(await worker.beat(), 200, 'the worker beats');
  worker.send({ action: 'pull', queue });
  const task = await worker.frame((f) => 'task' in f);
  t.equal((task.task as Frame).id, taskId);
  t.equal((task.task as Frame).attempts, 1);
  await until(async () => {
    const view = await connectionView(gw, 'lapser', worker.clientId);
    return view?.linked === true && view.tasks.some((task) => task.taskId === taskId);
  }, 5000).catch(() => { throw new Error('the worker\'s connection was never shown linked to its pid and holding its task in /services'); });
  return worker;
}

async function otherWorker(t: Teardown, gw: RunningGateway, queue: string): Promise<TestSocket> {
  const other = await TestSocket.open(`${gw.busUrl}?name=other`);
  t.teardown(() => other.close());
  other.send({ action: 'pull', queue });
  return other;
}

t.test('a pid that is not a positive integer is refused at the upgrade with 400', async (t) => {
  const gw = await startGateway(t, LIVENESS);
  for (const pid of ['abc', '0', '-4', '1.5', '99999999999']) {
    const ws = new WebSocket(`${gw.busUrl}?pid=${pid}`);
    ws.on('error', () => {});
    const [, response] = await once(ws, 'unexpected-response') as [unknown, import('node:http').IncomingMessage];
    const chunks: Buffer[] = [];
    for await (const chunk of response) chunks.push(chunk as Buffer);
    t.equal(response.statusCode, 400, `pid=${pid}`);
    t.equal((JSON.parse(Buffer.concat(chunks).toString()) as Frame).code, 'INVALID_FRAME', `pid=${pid}`);
    ws.terminate();
  }
  const fine = await TestSocket.open(`${gw.busUrl}?pid=${process.pid}&name=fine`);
  t.teardown(() => fine.close());
  t.ok(fine, 'a positive integer pid is accepted');
});

for (const stop of [false, true]) {
  t.test(`a frozen worker loses its task to another within 4 s, attempts 2 (HEARTBEAT_STOP=${stop})`, async (t) => {
    const gw = await startGateway(t, { ...LIVENESS, heartbeatStop: stop });
    const watcher = await TestSocket.open(`${gw.busUrl}?name=watcher`);
    t.teardown(() => watcher.close());
    await watcher.call({ action: 'subscribe', topic: 'heartbeat.down' });
    const taskId = await enqueue(gw, 'lapse');
    const frozen = await holdingWorker(t, gw, 'lapse', taskId);
    const other = await otherWorker(t, gw, 'lapse');

    process.kill(frozen.pid, 'SIGSTOP');
    const frozenAt = Date.now();
    t.teardown(() => {
      try {
        process.kill(frozen.pid, 'SIGCONT');
      } catch {
        // already gone
      }
    });
    const delivered = await other.next((f) => 'task' in f, 4000);
    const after = Date.now() - frozenAt;
    t.ok(after < 4000, `redelivered ${after} ms after the freeze`);
    t.match(delivered.task, { id: taskId, queue: 'lapse', attempts: 2 });
    const down = (await watcher.event('heartbeat.down')).event as Frame;
    t.match(down.payload, { pid: frozen.pid, action: stop ? 'stopped' : 'reported' });

    if (stop) {
      // SIGTERM waits in a stopped process; SIGKILL after the grace does not.
      const exit = await frozen.exited;
      t.ok(exit.signal === 'SIGKILL' || exit.signal === 'SIGTERM', `stopped by the gateway (${exit.signal})`);
    } else {
      process.kill(frozen.pid, 'SIGCONT');
      const revoke = await frozen.frame((f) => 'revoke' in f);
      t.same(revoke.revoke, { taskId, queue: 'lapse', reason: 'heartbeat lapsed' }, 'the task is revoked by name');
      const closed = await frozen.next((line) => 'close' in line);
      t.same(closed, { close: 4001, reason: 'heartbeat lapsed' });
      frozen.reconnect();
      await frozen.frame((f) => 'welcome' in f);
      frozen.send({ action: 'ack', taskId, id: 'late' });
      const refused = await frozen.frame((f) => f.id === 'late');
      t.equal(refused.code, 'UNKNOWN_TASK', 'the revoked task cannot be acked by its old holder');
    }

    const acked = await other.call({ action: 'ack', taskId, result: 'done by the other' });
    t.ok(acked.ok, `the other worker acks: ${JSON.stringify(acked)}`);
    const view = await (await fetch(`${gw.httpUrl}/queues/lapse/tasks/${taskId}`)).json() as Frame;
    t.match(view, { state: 'completed', attempts: 2, result: 'done by the other' });
  });
}

t.test('an unproven pid is a label: shown in /services, never acted on when that pid goes quiet', async (t) => {
  const gw = await startGateway(t, LIVENESS);
  const sleeper = spawn('sleep', ['300'], { stdio: 'ignore' });
  t.teardown(() => sleeper.kill('SIGKILL'));
  const pid = sleeper.pid as number;
  const watcher = await TestSocket.open(`${gw.busUrl}?name=watcher`);
  t.teardown(() => watcher.close());
  await watcher.call({ action: 'subscribe', topic: 'heartbeat.down' });

  const taskId = await enqueue(gw, 'label');
  const claimant = await TestSocket.open(`${gw.busUrl}?name=claimant&pid=${pid}`);
  t.teardown(() => claimant.close());
  claimant.send({ action: 'pull', queue: 'label' });
  await claimant.next((f) => 'task' in f);
  // The test process beats in the sleeper's name: it cannot prove it.
  const res = await fetch(`${gw.httpUrl}/heartbeat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pid, name: 'claimant' }) });
  t.equal(res.status, 200);
  const [view] = await connectionsOf(gw, 'claimant');
  t.match(view, { pid, linked: false, tasks: [{ queue: 'label', taskId }] });

  const down = (await watcher.event('heartbeat.down', 5000)).event as Frame;
  t.match(down.payload, { pid, action: 'reported', reason: 'unverified pid' });
  // Lease release runs before heartbeat.down is published: a receipt now proves nothing was done.
  claimant.send({ action: 'ping', id: 'barrier' });
  const pong = await claimant.next((f) => f.id === 'barrier');
  t.ok('pong' in pong, 'the connection is still open');
  t.same(claimant.received.filter((f) => 'revoke' in f), [], 'no revoke');
  const [still] = await connectionsOf(gw, 'claimant');
  t.match(still, { tasks: [{ queue: 'label', taskId }] }, 'it still holds its task');
  t.equal(sleeper.exitCode, null, 'the sleeper was not signalled');
});

t.test('/services: a linked connection with its pid, subscriptions, pulls and tasks, under the service its process beats as', async (t) => {
  const gw = await startGateway(t, LIVENESS);
  const taskId = await enqueue(gw, 'shown');
  // No ?name=: the connection is found through the heartbeat of the process it is linked to.
  const worker = await busWorker(t, gw, 'anonymous-worker', false);
  t.equal(await worker.beat(), 200);
  worker.send({ action: 'subscribe', topic: 'jobs.>', id: 's' });
  await worker.frame((f) => f.id === 's');
  worker.send({ action: 'pull', queue: 'shown' });
  await worker.frame((f) => 'task' in f);
  worker.send({ action: 'pull', queue: 'shown' });
  worker.send({ action: 'pull', queue: 'shown' });
  worker.send({ action: 'ping', id: 'barrier' });
  await worker.frame((f) => f.id === 'barrier');
  let view: ConnectionView | undefined;
  await until(async () => {
    view = await connectionView(gw, 'anonymous-worker', worker.clientId);
    return view?.linked === true;
  }).catch(() => { throw new Error(`never shown linked: ${JSON.stringify(view)}`); });
  t.same(view, {
    clientId: worker.clientId, pid: worker.pid, linked: true, subscriptions: ['jobs.>'],
    pulls: [{ queue: 'shown', credits: 2 }], tasks: [{ queue: 'shown', taskId }],
  });
});
