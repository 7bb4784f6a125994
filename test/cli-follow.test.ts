import { spawn } from 'node:child_process';
import { once } from 'node:events';
import t from 'tap';
import { BrokerClient, type Task } from '../src/client/index.js';
import { brainstem, cli } from './helpers/cli.js';
import { startGateway } from './helpers/gateway.js';
import { until } from './helpers/test-socket.js';

// `brainstem follow TASK_ID` (bus protocol v3 streams) against a real gateway, with a real worker.
const gw = await startGateway(t, { queueAttempts: 1 });

function client(id: string): BrokerClient {
  const c = new BrokerClient({ url: gw.busUrl, id });
  c.on('error', () => {});
  t.teardown(() => c.close());
  return c;
}

/** A follow that runs in the background: stdout as bytes (for --raw), stderr as text. */
function followInBackground(args: string[]) {
  const child = spawn(process.execPath, [cli, 'follow', ...args, '--url', gw.busUrl], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { child.kill('SIGKILL'); });
  const stdout: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (data: Buffer) => stdout.push(data));
  child.stderr.on('data', (data: Buffer) => { stderr += data.toString(); });
  const exited = once(child, 'exit') as Promise<[number | null]>;
  return { stdout: () => Buffer.concat(stdout), stderr: () => stderr, exited };
}

const lines = (text: string) => text.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);

const worker = client('cli-follow-worker');
await worker.connect();
/** Per task: what its handler does with it. */
const scripts = new Map<string, (task: Task) => Promise<unknown>>();
for (const queue of ['llm.generate', 'tts.speak', 'slow.job']) {
  worker.work(queue, async (task) => {
    await until(() => scripts.has(task.id), 10_000, `a script for task ${task.id}`);
    return scripts.get(task.id)!(task);
  });
}

t.test('follow prints each chunk as it comes, one JSON line (binary as base64), and ends 0 with the result', async (t) => {
  const enqueued = await brainstem(['enqueue', 'llm.generate', '{"prompt":"hi"}', '--stream', '--url', gw.busUrl]);
  t.equal(enqueued.code, 0, enqueued.stderr);
  const taskId = enqueued.stdout.trim();
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => { finish = resolve; });
  scripts.set(taskId, async (task) => {
    await task.write!('Hel');
    await task.write!({ token: 'lo', logprob: -0.5 });
    await finished;
    await task.write!(new Uint8Array([0, 1, 255]));
    return { tokens: 3 };
  });

  const follow = followInBackground([taskId]);
  await until(() => follow.stdout().toString().split('\n').length > 2, 10_000, 'the first two chunks, while the task still runs');
  t.same(lines(follow.stdout().toString()), [
    { seq: 1, attempt: 1, data: 'Hel' },
    { seq: 2, attempt: 1, data: { token: 'lo', logprob: -0.5 } },
  ], 'printed before the task ended');
  finish();
  const [code] = await follow.exited;
  t.equal(code, 0, follow.stderr());
  t.same(lines(follow.stdout().toString()).slice(2), [
    { seq: 3, attempt: 1, base64: Buffer.from([0, 1, 255]).toString('base64') },
    { seq: 4, end: 'ok', result: { tokens: 3 } },
  ]);

  const later = await brainstem(['follow', taskId, '--from', '3', '--url', gw.busUrl]);
  t.equal(later.code, 0, later.stderr);
  t.same(lines(later.stdout).map((line) => line.seq), [3, 4], '--from starts at that seq of a kept stream');
});

t.test('--raw writes the chunks themselves to stdout and the result to stderr', async (t) => {
  const { taskId } = await enqueueStreamed('tts.speak');
  scripts.set(taskId, async (task) => {
    await task.write!('Hello, ');
    await task.write!('world\n');
    await task.write!(Buffer.from([0xde, 0xad, 0xbe, 0xef]));
    await task.write!({ done: true });
    return 'spoken';
  });
  const follow = followInBackground([taskId, '--raw']);
  const [code] = await follow.exited;
  t.equal(code, 0, follow.stderr());
  t.same([...follow.stdout()], [...Buffer.concat([Buffer.from('Hello, world\n'), Buffer.from([0xde, 0xad, 0xbe, 0xef]), Buffer.from('{"done":true}\n')])],
    'text as it is, bytes as they are, other JSON as a line');
  t.match(follow.stderr(), /ended ok; result "spoken"/);
});

t.test('a failed task exits 2, a cancelled one 3, each after printing its end', async (t) => {
  const failing = (await enqueueStreamed('llm.generate')).taskId;
  scripts.set(failing, async (task) => {
    await task.write!('partial');
    throw new Error('model crashed');
  });
  const failed = await brainstem(['follow', failing, '--url', gw.busUrl]);
  t.equal(failed.code, 2, failed.stderr);
  t.same(lines(failed.stdout), [{ seq: 1, attempt: 1, data: 'partial' }, { seq: 2, end: 'failed' }]);
  t.match(failed.stderr, new RegExp(`task ${failing} ended failed`));

  const slow = (await enqueueStreamed('slow.job')).taskId;
  scripts.set(slow, async (task) => {
    await task.write!('started');
    await new Promise((resolve) => task.signal!.addEventListener('abort', resolve));
    return null;
  });
  const follow = followInBackground([slow]);
  await until(() => follow.stdout().length > 0, 10_000, 'the first chunk');
  const cancel = await brainstem(['cancel', 'slow.job', slow, '--url', gw.httpUrl]);
  t.equal(cancel.code, 0, cancel.stderr);
  const [code] = await follow.exited;
  t.equal(code, 3, follow.stderr());
  t.same(lines(follow.stdout().toString()), [{ seq: 1, attempt: 1, data: 'started' }, { seq: 2, end: 'cancelled' }]);
});

t.test('a task without a stream exits 1 with the gateway\'s code', async (t) => {
  const plain = await brainstem(['enqueue', 'plain.jobs', '{}', '--url', gw.busUrl]);
  for (const taskId of [plain.stdout.trim(), 'no-such-task']) {
    const run = await brainstem(['follow', taskId, '--url', gw.busUrl]);
    t.equal(run.code, 1);
    t.equal(run.stdout, '');
    t.match(run.stderr, new RegExp(`^brainstem: task ${taskId} has no stream: [^\\n]*\\(UNKNOWN_TASK\\)\\n$`), 'one line, with the code');
  }
  const bad = await brainstem(['follow', 'x', '--from', '0', '--url', gw.busUrl]);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /--from must be a whole number above 0/);
});

async function enqueueStreamed(queue: string): Promise<{ taskId: string }> {
  const run = await brainstem(['enqueue', queue, '{}', '--stream', '--url', gw.busUrl]);
  if (run.code !== 0) throw new Error(`enqueue failed: ${run.stderr}`);
  return { taskId: run.stdout.trim() };
}
