import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { serverEntry, untilHealthy } from './helpers/process.js';
import { connect, enqueueAll, missing, nextFrame, QUEUE, RECEIPTED, work } from './helpers/queue-load.js';
import { freePort } from './helpers/ports.js';
import { until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;
type Teardown = { teardown(fn: () => unknown): void };

const POISON = 'durable.poison';

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
  await untilHealthy(httpUrl);
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
  // One task held, never acked, with a single attempt: it must not come back forever.
  const holder = await connect(`${first.busUrl}?name=holder`, t);
  const heldFrame = nextFrame(holder, (f) => 'task' in f);
  holder.send(JSON.stringify({ action: 'enqueue', queue: POISON, task: 'held', opts: { attempts: 1 } }));
  holder.send(JSON.stringify({ action: 'pull', queue: POISON }));
  const held = ((await heldFrame).task as Frame).id as string;
  const before = work(await connect(`${first.busUrl}?name=worker-1`, t), 10);
  const producer = await connect(`${first.busUrl}?name=producer`, t);
  const { receipted, enough } = enqueueAll(producer, () => first.child.kill('SIGKILL'));
  await enough;
  await once(first.child, 'exit');
  t.ok(before.delivered.length > 0 && before.delivered.length < RECEIPTED, `the crash came mid-work (${before.delivered.length} delivered)`);

  const second = await spawnGateway(t, dataDir);
  const after = work(await connect(`${second.busUrl}?name=worker-2`, t), 20);
  // Enqueues cut off by the crash may have been stored without a receipt: they are worked off too.
  const countsOf = async () => ((await (await fetch(`${second.httpUrl}/queues/${QUEUE}`)).json()) as Frame).counts as Frame;
  await until(async () => {
    if (missing(receipted, before.delivered, after.delivered).length > 0) return false;
    const now = await countsOf();
    return now.waiting === 0 && now.active === 0 && now.delayed === 0;
  }, 60_000).catch(() => undefined);
  t.same(missing(receipted, before.delivered, after.delivered), [], `all ${receipted.size} receipted tasks arrived, none missing`, {
    errors: [...before.errors, ...after.errors].slice(0, 5),
  });
  // A task acked just before the crash may have lost only its receipt: Redis has it completed, and it is not redone.
  const arrived = new Set([...before.delivered, ...after.delivered]);
  const counts = await countsOf();
  t.match(counts, { waiting: 0, active: 0, delayed: 0, failed: 0 });
  t.equal(counts.completed, arrived.size, 'every task that arrived was completed once, in Redis');
  t.comment(`delivered twice (leased at the crash, at-least-once): ${before.delivered.length + after.delivered.length - arrived.size}`);

  // The held task's only delivery ended with the crash: back from its expired lease, it is dead, not delivered again.
  const poisonPuller = await connect(`${second.busUrl}?name=poison-puller`, t);
  const poisonTasks: Frame[] = [];
  poisonPuller.on('message', (data) => {
    const frame = JSON.parse(String(data)) as Frame;
    if (frame.task) poisonTasks.push(frame);
  });
  poisonPuller.send(JSON.stringify({ action: 'pull', queue: POISON }));
  const stateOf = async () => (await (await fetch(`${second.httpUrl}/queues/${POISON}/tasks/${held}`)).json()) as Frame;
  await until(async () => (await stateOf()).state === 'failed', 20_000).catch(() => undefined);
  t.match(await stateOf(), { state: 'failed', attempts: 1, failedReason: 'no ack or fail after 1 delivery: attempts spent' });
  t.same(poisonTasks, [], 'and not delivered again');

  second.child.kill('SIGTERM');
  await once(second.child, 'exit');
});
