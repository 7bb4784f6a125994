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
function onPackage(t: Teardown, script: string, sourceDir = scriptsDir, besides: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), 'brainstem-py-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const source = readFileSync(join(sourceDir, script), 'utf8');
  const changed = source.replace(SEED_IMPORT, PACKAGE_IMPORT);
  const before = source.split('\n');
  const after = changed.split('\n');
  const differing = before.filter((line, i) => line !== after[i]);
  if (differing.length !== 1 || differing[0] !== SEED_IMPORT) throw new Error(`expected exactly the import line to change in ${script}`);
  writeFileSync(join(dir, script), changed);
  for (const file of ['stdio.py', ...besides]) copyFileSync(join(scriptsDir, file), join(dir, file));
  return dir;
}

async function enqueue(socket: TestSocket, queue: string, tasks: unknown[], opts?: Frame): Promise<string[]> {
  const receipts = await Promise.all(tasks.map((task) => socket.call(opts ? { action: 'enqueue', queue, task, opts } : { action: 'enqueue', queue, task })));
  return receipts.map((r) => r.taskId as string);
}

async function taskState(gw: RunningGateway, queue: string, id: string): Promise<unknown> {
  const response = await fetch(`${gw.httpUrl}/queues/${queue}/tasks/${id}`);
  return ((await response.json()) as Frame).state;
}

async function credits(gw: RunningGateway, queue: string): Promise<number> {
  const response = await fetch(`${gw.httpUrl}/queues/${queue}`);
  const pullers = ((await response.json()) as { pullers?: { credits: number }[] }).pullers ?? [];
  return pullers.reduce((sum, p) => sum + p.credits, 0);
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

    const [taskId] = await enqueue(ts, 'transcribe.audio', [{ audio: 'from the queue' }]);
    const done = (await ts.event('transcript.final')).event as Frame;
    t.same(done.payload, { text: 'FROM THE QUEUE', task: taskId }, `${variant.name}: the task handler ran`);
    await until(async () => (await taskState(gw, 'transcribe.audio', taskId as string)) === 'completed');
    service.signal('SIGKILL');
    await service.exited;
    await until(() => !subscribed(gw, 'voice.input'));
  }
});

t.test("the seed's start_service processes tasks through the gateway, on its own client and on the package", async (t) => {
  const gw = await startGateway(t);
  const ts = await TestSocket.open(gw.busUrl);
  t.teardown(() => ts.close());
  const template = onPackage(t, 'service_template.py', join(seedRoot, 'shared', 'py'), ['seed_service.py']);
  const variants = [
    { name: 'seed client', script: join(scriptsDir, 'seed_service.py'), args: [], path: [seedRoot] },
    { name: 'brainstem package', script: join(template, 'seed_service.py'), args: ['package'], path: [packageSource] },
  ];
  for (const variant of variants) {
    const queue = `stt.${variant.args.length ? 'package' : 'seed'}`;
    const service = PythonProcess.start(t, variant.script, [gw.busUrl, queue, ...variant.args], {
      path: variant.path,
      env: { BRAINSTEM_URL: gw.busUrl },
    });
    await service.next((l) => l.started === true);
    await until(async () => (await credits(gw, queue)) === 1);
    t.pass(`${variant.name}: the worker started on an empty queue and its pull waits`);

    await until(() => subscribed(gw, 'voice.input'));
    ts.send({ action: 'publish', message: { type: 'voice.input', payload: { n: 1 } } });
    t.same(await service.next((l) => 'event' in l), { event: 'voice.input', payload: { n: 1 } }, `${variant.name}: handle_event ran`);

    const [first, second] = await enqueue(ts, queue, [{ url: 'a.wav' }, { url: 'b.wav' }]);
    const [failing] = await enqueue(ts, queue, [{ fail: true }], { attempts: 2, backoff: { type: 'fixed', delay: 100 } });
    t.same((await service.next((l) => 'done' in l)).done, first);
    t.same((await service.next((l) => 'done' in l)).done, second, `${variant.name}: tasks handled in order, each pulled after the last`);
    t.same((await service.next((l) => l.raising === failing)).attempts, 1);
    t.same((await service.next((l) => l.raising === failing)).attempts, 2, `${variant.name}: a raising task is failed, then retried`);
    await until(async () => (await taskState(gw, queue, failing as string)) === 'failed');
    for (const id of [first, second]) t.equal(await taskState(gw, queue, id as string), 'completed', `${variant.name}: acked`);
    service.signal('SIGKILL');
    await service.exited;
    await until(() => !subscribed(gw, 'voice.input'));
  }
});
