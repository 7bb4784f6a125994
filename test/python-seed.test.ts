import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startGateway, type RunningGateway } from './helpers/gateway.js';
import { TestSocket, until } from './helpers/test-socket.js';
import { packageSource, PythonProcess, scriptsDir, seedRoot } from './python/python-process.js';

type Frame = Record<string, unknown>;
interface Teardown {
  teardown(fn: () => unknown): void;
}

const SEED_IMPORT = 'from shared.py.broker_client import BrokerClient';
const PACKAGE_IMPORT = 'from brainstem import BrokerClient';

function subscribed(gw: RunningGateway, pattern: string): boolean {
  return (gw.app.bus.router.subscriptionCounts()[pattern] ?? 0) > 0;
}

/**
 * A copy of a script written for the seed's client with its import line
 * changed to the package, and nothing else: returns its folder.
 */
function onPackage(t: Teardown, script: string, sourceDir = scriptsDir): string {
  const dir = mkdtempSync(join(tmpdir(), 'brainstem-py-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const source = readFileSync(join(sourceDir, script), 'utf8');
  const changed = source.replace(SEED_IMPORT, PACKAGE_IMPORT);
  const before = source.split('\n');
  const after = changed.split('\n');
  const differing = before.filter((line, i) => line !== after[i]);
  if (differing.length !== 1 || differing[0] !== SEED_IMPORT) throw new Error(`expected exactly the import line to change in ${script}`);
  writeFileSync(join(dir, script), changed);
  copyFileSync(join(scriptsDir, 'stdio.py'), join(dir, 'stdio.py'));
  return dir;
}

t.test("the seed's broker_client.py subscribes, publishes and receives events unchanged but for the URL", async (t) => {
  const gw = await startGateway(t);
  const seed = PythonProcess.start(t, 'seed_pubsub.py', [gw.busUrl], { path: [seedRoot] });
  await seed.next((l) => 'subscribed' in l);
  await until(() => subscribed(gw, 'agent.reply'));

  seed.child.stdin.write('publish\n');
  const event = (await seed.next((l) => 'event' in l)).event as Frame;
  t.equal(event.type, 'agent.reply');
  t.same(event.payload, { text: 'hello' });
  t.equal(event.source, 'cephalon', "the seed client's own source is kept");
  t.equal(event.correlationId, 'c-1');
  t.equal(event.replyTo, 'tts.done');

  seed.child.stdin.write('unsubscribe\n');
  await seed.next((l) => 'unsubscribed' in l);
  await until(() => !subscribed(gw, 'agent.reply'));
  seed.child.stdin.write('quit\n');
  t.equal((await seed.exited).code, 0);
  t.notMatch(seed.all.map((l) => String(l.text ?? '')).join('\n'), /error processing message/, 'the welcome frame and the gateway\'s frames break nothing');
  t.equal(seed.stderr, '', 'nothing on stderr');
});

t.test('a service written for the seed client runs on the package by changing only its import', async (t) => {
  const gw = await startGateway(t);
  const ts = await TestSocket.open(gw.busUrl);
  t.teardown(() => ts.close());
  await ts.call({ action: 'subscribe', topic: 'transcript.final' });

  const variants = [
    { name: 'seed client', script: join(scriptsDir, 'seed_style_service.py'), path: [seedRoot] },
    { name: 'brainstem package', script: join(onPackage(t, 'seed_style_service.py'), 'seed_style_service.py'), path: [packageSource] },
  ];
  for (const variant of variants) {
    const service = PythonProcess.start(t, variant.script, [gw.busUrl], { path: variant.path });
    await service.next((l) => l.ready === true);
    await until(() => subscribed(gw, 'voice.input'));
    ts.send({ action: 'publish', message: { type: 'voice.input', payload: { audio: `hi from ${variant.name}` }, correlationId: variant.name } });
    const reply = (await ts.event('transcript.final')).event as Frame;
    t.same(reply.payload, { text: `HI FROM ${variant.name.toUpperCase()}` }, `${variant.name}: the event handler answered`);
    t.equal(reply.correlationId, variant.name);
    t.equal(reply.source, 'stt');
    service.signal('SIGKILL');
    await service.exited;
    await until(() => !subscribed(gw, 'voice.input'));
  }
});
