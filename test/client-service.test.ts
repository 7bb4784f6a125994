import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { BrokerClient } from '../src/client/index.js';
import { startGateway } from './helpers/gateway.js';
import { until } from './helpers/test-socket.js';

const service = fileURLToPath(new URL('./fixtures/client/slow-service.mjs', import.meta.url));

interface Counts { waiting: number; active: number; completed: number }

t.test('startService: events, tasks, heartbeats; SIGTERM finishes the tasks in hand and exits 0', async (t) => {
  const gw = await startGateway(t);
  const producer = new BrokerClient({ url: gw.busUrl, id: 'producer' });
  t.teardown(() => producer.close());
  await producer.connect();

  const name = `slow-service-${process.pid}`;
  const child = spawn(process.execPath, [service], {
    env: { ...process.env, BRAINSTEM_URL: gw.busUrl, SERVICE_ID: name, TASK_MS: '1500' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => { child.kill('SIGKILL'); });
  const exited = once(child, 'exit') as Promise<[number | null]>;
  const lines: string[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => lines.push(line));
  createInterface({ input: child.stderr }).on('line', (line) => lines.push(`stderr: ${line}`));

  await until(() => lines.includes('ready'), 30_000);
  t.ok(lines.includes(`[${name}] connected to broker`), 'says it is connected, as the seed template did');
  await producer.publish('note.written', { text: 'hi' });
  await until(() => lines.includes('event note.written'));
  t.pass('its topics reach handleEvent');
  await until(async () => {
    const records = await (await fetch(`${gw.httpUrl}/heartbeats`)).json() as { name: string; pid: number }[];
    return records.some((r) => r.name === name && r.pid === child.pid);
  }, 10_000);
  t.pass('its heartbeat reached the gateway');

  for (let n = 0; n < 5; n++) await producer.enqueue('slow.job', { n });
  await until(() => lines.filter((l) => l.startsWith('start ')).length === 3, 10_000);
  child.kill('SIGTERM');
  t.equal(lines.filter((l) => l.startsWith('start ')).length, 3, 'three in hand, as its concurrency says');
  const [code] = await exited;
  t.equal(code, 0, 'exits 0 after draining');
  t.equal(lines.filter((l) => l.startsWith('done ')).length, 3, 'the three tasks in hand were finished');
  const counts = (await (await fetch(`${gw.httpUrl}/queues/slow.job`)).json() as { counts: Counts }).counts;
  t.match(counts, { completed: 3, active: 0, waiting: 2 }, 'acked before exit; the rest wait for the next worker');
});
