import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import WebSocket from 'ws';
import { startGateway } from './helpers/gateway.js';
import { serverEntry } from './helpers/process.js';
import { startRedis } from './helpers/redis.js';
import { freePort } from './helpers/restartable-gateway.js';
import { until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;
type Teardown = { teardown(fn: () => unknown): void };

const RECEIPTED = 2000;
/** Enqueues still in flight when the lights go out: they may or may not be stored. */
const IN_FLIGHT = 50;
const QUEUE = 'durable.work';

async function connect(url: string, t: Teardown): Promise<WebSocket> {
  const ws = new WebSocket(url);
  ws.on('error', () => {});
  await once(ws, 'open');
  t.teardown(() => ws.terminate());
  return ws;
}

/**
 * Sends `RECEIPTED + IN_FLIGHT` enqueues at once and calls `onEnough` as
 * soon as RECEIPTED of them have their receipt; resolves with every
 * receipted taskId (the ones that came after `onEnough` included).
 */
function enqueueAll(ws: WebSocket, onEnough: () => void): { receipted: Set<string>; enough: Promise<void> } {
  const receipted = new Set<string>();
  const enough = new Promise<void>((resolve) => {
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      if (frame.ok !== true || typeof frame.taskId !== 'string') return;
      receipted.add(frame.taskId);
      if (receipted.size === RECEIPTED) {
        onEnough();
        resolve();
      }
    });
  });
  // In batches, so that the worker is busy while tasks pour in.
  let sent = 0;
  const sendBatch = () => {
    for (let end = Math.min(sent + 100, RECEIPTED + IN_FLIGHT); sent < end; sent++) {
      ws.send(JSON.stringify({ action: 'enqueue', queue: QUEUE, task: { n: sent }, id: sent }));
    }
    if (sent < RECEIPTED + IN_FLIGHT && ws.readyState === ws.OPEN) setTimeout(sendBatch, 10);
  };
  sendBatch();
  return { receipted, enough };
}

/** A worker with `credits` pulls in flight that acks every task it gets and pulls again. */
function work(ws: WebSocket, credits: number): { delivered: string[]; acked: Set<string>; errors: Frame[] } {
  const delivered: string[] = [];
  const acked = new Set<string>();
  const errors: Frame[] = [];
  ws.on('message', (data) => {
    const frame = JSON.parse(String(data)) as Frame;
    if (frame.task) {
      const id = (frame.task as Frame).id as string;
      delivered.push(id);
      // Some work, so that tasks are leased when the crash comes.
      setTimeout(() => {
        if (ws.readyState !== ws.OPEN) return;
        ws.send(JSON.stringify({ action: 'ack', taskId: id, id: `ack:${id}` }));
        ws.send(JSON.stringify({ action: 'pull', queue: QUEUE }));
      }, 2);
    } else if (typeof frame.id === 'string' && frame.id.startsWith('ack:') && frame.ok === true) {
      acked.add(frame.id.slice(4));
    } else if (frame.error) {
      errors.push(frame);
    }
  });
  for (let i = 0; i < credits; i++) ws.send(JSON.stringify({ action: 'pull', queue: QUEUE }));
  return { delivered, acked, errors };
}

function missing(receipted: Set<string>, ...arrived: Iterable<string>[]): string[] {
  const seen = new Set<string>();
  for (const ids of arrived) for (const id of ids) seen.add(id);
  return [...receipted].filter((id) => !seen.has(id));
}

interface GatewayProcess {
  child: ChildProcess;
  httpUrl: string;
  busUrl: string;
}

async function spawnGateway(t: Teardown, dataDir: string): Promise<GatewayProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [serverEntry], {
    env: {
      ...process.env,
      PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'warn', REDIS_URL: '',
      QUEUE_LEASE_MS: '2000', QUEUE_STALLED_CHECK_MS: '500', QUEUE_KEEP_COMPLETED: '100000',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const httpUrl = `http://127.0.0.1:${port}`;
  // Generous: a loaded machine takes seconds to start a Node process.
  await until(async () => {
    try {
      return (await fetch(`${httpUrl}/health`)).status === 200;
    } catch {
      return false;
    }
  }, 45_000);
  return { child, httpUrl, busUrl: `ws://127.0.0.1:${port}/bus` };
}

t.test('kill -9 of the gateway with 2,000 receipted tasks, some leased: after a restart every one arrives', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'brainstem-durable-'));
  t.teardown(() => {
    // The embedded redis-server of the last gateway, if a failure left it behind.
    const pidFile = join(dataDir, 'redis', 'redis.pid');
    if (existsSync(pidFile)) {
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  const first = await spawnGateway(t, dataDir);
  const before = work(await connect(`${first.busUrl}?name=worker-1`, t), 10);
  const producer = await connect(`${first.busUrl}?name=producer`, t);
  const { receipted, enough } = enqueueAll(producer, () => first.child.kill('SIGKILL'));
  await enough;
  await once(first.child, 'exit');
  t.ok(before.delivered.length > 0 && before.delivered.length < RECEIPTED, `the crash came mid-work (${before.delivered.length} delivered)`);

  const second = await spawnGateway(t, dataDir);
  const after = work(await connect(`${second.busUrl}?name=worker-2`, t), 20);
  await until(() => missing(receipted, before.acked, after.acked).length === 0, 40_000)
    .catch(() => undefined);
  t.same(missing(receipted, before.acked, after.acked), [], `all ${receipted.size} receipted tasks were done, none missing`, {
    errors: [...before.errors, ...after.errors].slice(0, 5),
  });
  // Enqueues cut off by the crash may have been stored without a receipt: they are worked off too.
  const countsOf = async () => ((await (await fetch(`${second.httpUrl}/queues/${QUEUE}`)).json()) as Frame).counts as Frame;
  await until(async () => {
    const now = await countsOf();
    return now.waiting === 0 && now.active === 0 && now.delayed === 0;
  }, 20_000).catch(() => undefined);
  const unique = new Set([...before.acked, ...after.acked]);
  const counts = await countsOf();
  t.match(counts, { waiting: 0, active: 0, delayed: 0, failed: 0 });
  t.equal(counts.completed, unique.size, 'and Redis agrees on what is done');
  t.comment(`redelivered after the crash (at-least-once): ${before.delivered.length + after.delivered.length - unique.size}`);

  second.child.kill('SIGTERM');
  await once(second.child, 'exit');
});

t.test('a Redis restart (append-only file) under load: every receipted task arrives', async (t) => {
  const redis = await startRedis(t, { appendonly: true });
  const gw = await startGateway(t, { redisUrl: redis.url, queueKeepCompleted: 100_000 });
  const worker = work(await connect(`${gw.busUrl}?name=worker`, t), 10);
  const producer = await connect(`${gw.busUrl}?name=producer`, t);
  let restarted: Promise<void> = Promise.resolve();
  const { receipted, enough } = enqueueAll(producer, () => {
    restarted = redis.stop().then(() => new Promise((r) => setTimeout(r, 300))).then(() => redis.restart());
  });
  await enough;
  await restarted;
  t.ok(worker.delivered.length < RECEIPTED, `Redis went down mid-work (${worker.delivered.length} delivered)`);
  await until(() => missing(receipted, worker.acked).length === 0, 40_000).catch(() => undefined);
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
