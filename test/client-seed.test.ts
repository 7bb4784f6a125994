import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import t from 'tap';
import { BrokerClient } from '../src/client/index.js';
import { startRestartableGateway } from './helpers/restartable-gateway.js';
import { until } from './helpers/test-socket.js';

const seedTemplate = fileURLToPath(new URL('./fixtures/seed/serviceTemplate.js', import.meta.url));
const builtClient = pathToFileURL(fileURLToPath(new URL('../dist/src/client/index.js', import.meta.url))).href;
const SEED_IMPORT = 'import { BrokerClient } from "./brokerClient.js";';

t.test("the seed's serviceTemplate.js on brainstem/client (an import change) survives a gateway restart", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'brainstem-seed-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const original = readFileSync(seedTemplate, 'utf8');
  t.ok(original.includes(SEED_IMPORT));
  writeFileSync(join(dir, 'serviceTemplate.js'), original.replace(SEED_IMPORT, `import { BrokerClient } from ${JSON.stringify(builtClient)};`));
  // The seed's own usage example, printing what it handles.
  writeFileSync(join(dir, 'tts.mjs'), `import { startService } from "./serviceTemplate.js";
startService({
  id: "tts",
  queues: ["generate.audio"],
  topics: ["agent.reply"],
  handleEvent: async (event) => { console.log(JSON.stringify({ event: event.payload })); },
  handleTask: async (task) => { console.log(JSON.stringify({ task: task.payload })); },
});
`);

  const gw = await startRestartableGateway(t);
  const child = spawn(process.execPath, [join(dir, 'tts.mjs')], {
    env: { ...process.env, BRAINSTEM_URL: gw.busUrl },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => { child.kill('SIGKILL'); });
  const tasks: unknown[] = [];
  const events: unknown[] = [];
  const output: string[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    output.push(line);
    if (line.startsWith('{"task"')) tasks.push(JSON.parse(line).task);
    if (line.startsWith('{"event"')) events.push(JSON.parse(line).event);
  });
  createInterface({ input: child.stderr }).on('line', (line) => output.push(line));
  await until(() => output.includes('[tts] connected to broker'), 30_000);

  const producer = new BrokerClient({ url: gw.busUrl, id: 'cephalon', reconnect: { initialDelayMs: 50, maxDelayMs: 300 } });
  t.teardown(() => producer.close());
  await producer.connect();
  await until(async () => (await producer.publish('agent.reply', 'before')).delivered === 1, 10_000);
  await producer.enqueue('generate.audio', { text: 'one' });
  await until(() => tasks.length === 1 && events.length >= 1, 10_000);

  await gw.restart(200);
  await until(() => producer.connected, 10_000);
  // The old client lost its subscription and its pull here; this one restores both.
  await until(async () => (await producer.publish('agent.reply', 'after')).delivered === 1, 10_000);
  for (const text of ['two', 'three']) await producer.enqueue('generate.audio', { text });
  await until(() => tasks.length === 3, 15_000);
  t.same(tasks, [{ text: 'one' }, { text: 'two' }, { text: 'three' }], 'kept pulling after the restart');
  t.equal(events[0], 'before');
  t.ok(events.includes('after'), 'kept its subscription after the restart');
  const counts = (await (await fetch(`${gw.httpUrl}/queues/generate.audio`)).json() as { counts: Record<string, number> }).counts;
  t.match(counts, { completed: 3, active: 0, waiting: 0 }, "its seed-style ack()s landed");
});
