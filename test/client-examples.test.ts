import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { BrokerClient, type BusEvent } from '../src/client/index.js';
import { startGateway } from './helpers/gateway.js';
import { until } from './helpers/test-socket.js';

const example = (file: string) => fileURLToPath(new URL(`../examples/${file}`, import.meta.url));

t.test('the examples: a file change becomes fs.change, then agent.think, then an answer through replyTo, then action.plan', async (t) => {
  const gw = await startGateway(t);
  const watched = mkdtempSync(join(tmpdir(), 'brainstem-watched-'));
  t.teardown(() => rmSync(watched, { recursive: true, force: true }));

  const observer = new BrokerClient({ url: gw.busUrl, id: 'observer' });
  t.teardown(() => observer.close());
  await observer.connect();
  const seen: BusEvent[] = [];
  for (const pattern of ['fs.change', 'agent.reply.>', 'action.plan']) await observer.subscribe(pattern, (e) => { seen.push(e); });

  const suffix = process.pid;
  const processes = [
    { file: 'file-watcher.js', name: `watcher-${suffix}` },
    { file: 'reasoning-service.js', name: `reasoning-${suffix}` },
    { file: 'think-worker.js', name: `thinker-${suffix}` },
  ].map(({ file, name }) => {
    const child = spawn(process.execPath, [example(file)], {
      env: { ...process.env, BRAINSTEM_URL: gw.busUrl, WATCH_DIR: watched, name },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.teardown(() => { child.kill('SIGKILL'); });
    const lines: string[] = [];
    createInterface({ input: child.stdout }).on('line', (line) => lines.push(line));
    createInterface({ input: child.stderr }).on('line', (line) => lines.push(`stderr: ${line}`));
    return { name, child, lines, exited: once(child, 'exit') as Promise<[number | null]> };
  });
  for (const p of processes) await until(() => p.lines.some((l) => l.includes('connected to broker')), 30_000);
  const watcher = processes[0]!;
  await until(() => watcher.lines.some((l) => l.includes('watching')), 5000);

  writeFileSync(join(watched, 'tts.py'), 'print("hello")\n');
  await until(() => seen.some((e) => e.type === 'action.plan'), 15_000);
  const change = seen.find((e) => e.type === 'fs.change');
  t.match(change, { source: watcher.name, payload: { file: 'tts.py', kind: 'modified' } }, 'the watcher published the change');
  const reply = seen.find((e) => e.type.startsWith('agent.reply.'));
  t.match(reply, { type: `agent.reply.reasoning-${suffix}`, payload: { suggestion: 'run the tests that cover tts.py' } },
    "the thinker's answer came back on the reasoning service's replyTo");
  const plan = seen.find((e) => e.type === 'action.plan');
  t.match(plan, { source: `reasoning-${suffix}`, payload: { taskId: reply?.correlationId, file: 'tts.py' } });

  for (const p of processes) p.child.kill('SIGTERM');
  for (const p of processes) {
    const [code] = await p.exited;
    t.equal(code, 0, `${p.name} stopped cleanly`);
  }
});
