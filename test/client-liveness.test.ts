import t from 'tap';
import { BrokerClient, type Task } from '../src/client/index.js';
import { startGateway } from './helpers/gateway.js';
import { until } from './helpers/test-socket.js';
import { PythonProcess } from './python/python-process.js';

const LIVENESS = { heartbeatTimeoutMs: 1500, heartbeatCheckIntervalMs: 500, heartbeatStopGraceMs: 400, heartbeatStop: false };

/**
 * The TypeScript client against a real gateway whose heartbeat check lapses:
 * the client links its connection with `?pid=` (this process, which holds
 * the socket), so when the beats stop the gateway revokes its task and
 * closes it with 4001. The stop itself is off: the process is this test.
 */
t.test('a lapsed heartbeat: the task is revoked (signal aborted, never acked), 4001 is reported, the client reconnects and gets the task again', async (t) => {
  const gw = await startGateway(t, LIVENESS);
  const client = new BrokerClient({ url: gw.busUrl, id: 'lapser', reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
  t.teardown(() => client.close());
  const closes: number[] = [];
  const revokes: { taskId: string; reason: string }[] = [];
  client.on('disconnected', ({ code }) => closes.push(code));
  client.on('revoked', (revoke) => revokes.push(revoke));
  await client.connect();
  const beat = await fetch(`${gw.httpUrl}/heartbeat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ pid: process.pid, name: 'lapser' }),
  });
  t.equal(beat.status, 200, 'one beat, then none');

  const queue = `lapse-${process.pid}`;
  const taskId = await client.enqueue(queue, { n: 1 });
  const seen: { attempts: number; aborted: unknown }[] = [];
  client.work(queue, (task: Task) => {
    if (task.attempts > 1) {
      seen.push({ attempts: task.attempts, aborted: null });
      return 'second time';
    }
    return new Promise((resolve) => {
      task.signal?.addEventListener('abort', () => {
        seen.push({ attempts: task.attempts, aborted: task.signal?.reason });
        // Returns normally: the client must still not ack a revoked task.
        resolve('too late');
      });
    });
  });

  await until(() => seen.length >= 2, 10_000).catch(() => {
    throw new Error(`the task did not come back after the lapse: ${JSON.stringify({ seen, closes, revokes })}`);
  });
  t.same(revokes, [{ taskId, queue, reason: 'heartbeat lapsed' }], 'revoked, with the reason');
  t.same(seen[0], { attempts: 1, aborted: 'heartbeat lapsed' }, 'the handler\'s signal aborted with the reason');
  t.ok(closes.includes(4001), `the disconnect reported 4001 (codes ${closes.join(', ')})`);
  t.equal(seen[1]?.attempts, 2, 'delivered again after the reconnect: the revoked delivery was not acked');
});

t.test('the Python client, the same: its async handler is cancelled, 4001 reported, the task comes back', async (t) => {
  const gw = await startGateway(t, LIVENESS);
  const python = PythonProcess.start(t, 'lapse.py', [gw.busUrl, gw.httpUrl]);
  const report = await python.next((line) => 'seen' in line, 20_000);
  t.equal(report.status, 200, 'one beat, then none');
  t.same(report.revokes, [{ taskId: report.taskId, queue: report.queue, reason: 'heartbeat lapsed' }], 'revoked, with the reason');
  t.same(report.seen, [{ attempts: 1, cancelled: 'heartbeat lapsed' }, { attempts: 2, cancelled: null }],
    'the handler was cancelled, and the task delivered again: the revoked delivery was not acked');
  t.ok((report.closes as number[]).includes(4001), `the disconnect reported 4001 (codes ${JSON.stringify(report.closes)})`);
});
