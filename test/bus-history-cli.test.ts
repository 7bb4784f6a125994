import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import t from 'tap';
import { brainstem, cli } from './helpers/cli.js';
import { startRestartableGateway } from './helpers/restartable-gateway.js';
import { TestSocket, until } from './helpers/test-socket.js';

const busHistory = [{ topics: 'orders.>', maxEvents: 1000, maxAgeSeconds: null }];

t.test('brainstem history and sub --since: replay, then live, resumed across a gateway restart without a repeat', async (t) => {
  const gw = await startRestartableGateway(t, { busHistory });
  const publish = async (payload: number) => {
    const socket = await TestSocket.open(gw.busUrl);
    const receipt = await socket.call({ action: 'publish', message: { type: 'orders.created', payload } });
    socket.close();
    return receipt.offset as string;
  };
  const first = await publish(1);
  await publish(2);
  await publish(3);

  const last2 = await brainstem(['history', 'orders.>', '--last', '2', '--url', gw.busUrl]);
  t.equal(last2.code, 0, last2.stderr);
  t.same(last2.stdout.trim().split('\n').map((line) => JSON.parse(line).payload), [2, 3]);
  t.match(last2.stderr, /2 events; newest offset \d+-\d+/);

  const child = spawn(process.execPath, [cli, 'sub', 'orders.>', '--since', first, '--count', '4', '--url', gw.busUrl], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { child.kill('SIGKILL'); });
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => stdout.push(line));
  createInterface({ input: child.stderr }).on('line', (line) => stderr.push(line));
  const exited = once(child, 'exit');
  // Two pipes: the status line on stderr may come after the events on stdout.
  await until(() => stdout.length === 2 && stderr.some((line) => line.includes('subscribed')), 10_000, 'the replay and its status line');
  t.match(stderr.join('\n'), /subscribed to orders\.> .*\(2 replayed\)/);

  await gw.restart();
  await publish(4);
  await until(() => stderr.some((line) => line.includes('resumed')), 10_000);
  await publish(5);
  const [code] = await exited;
  t.equal(code, 0, stderr.join('\n'));
  t.same(stdout.map((line) => JSON.parse(line).payload), [2, 3, 4, 5], 'the event published while it was away comes once, in order');
});

t.test('sub --since on a topic nothing retains, or a bad offset: one line, exit 1', async (t) => {
  const gw = await startRestartableGateway(t, { busHistory });
  const refused = await brainstem(['sub', 'fs.change', '--since', '0', '--url', gw.busUrl]);
  t.equal(refused.code, 1);
  t.match(refused.stderr.trim(), /^brainstem: fs\.change is not retained/);
  const bad = await brainstem(['history', 'orders.>', '--since', 'yesterday', '--url', gw.busUrl]);
  t.equal(bad.code, 1);
  t.match(bad.stderr.trim(), /answered 400: since must be an offset/);
  const both = await brainstem(['sub', 'orders.>', '--since', '0', '--last', '1', '--url', gw.busUrl]);
  t.match([both.code, both.stderr.trim()], [1, 'brainstem: give --since or --last, not both']);
});
