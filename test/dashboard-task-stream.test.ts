import t from 'tap';
import { encodeBinaryFrame } from '../src/bus/binary-frame.js';
import { dashboardSession, openDashboard, screenshot, textBecomes } from './helpers/dashboard-browser.js';
import { bearer, edgeConfig, tokenSpec } from './helpers/edge.js';
import { TestSocket, until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;

interface Teardown {
  teardown(fn: () => unknown): void;
}

const TOKENS = { ops: 'ops-token-0123456789abcdef', viewer: 'viewer-token-0123456789ab' };
// Auth on: the page's EventSource must carry its token (?token=), as its REST calls and its bus do.
const { gw, browser, pageUrl } = await dashboardSession(t, {
  edge: edgeConfig({
    tokens: [
      tokenSpec('ops', TOKENS.ops, { admin: true }),
      // May read the story.* queues, follow nothing on the bus, change nothing.
      tokenSpec('viewer', TOKENS.viewer, { queues: ['story.*'] }),
    ],
  }),
});

/** A worker holding a task it enqueued with `opts.stream`. */
async function streamedTask(t: Teardown, queue: string, task: unknown): Promise<{ worker: TestSocket; taskId: string }> {
  const worker = await TestSocket.open(`${gw.busUrl}?name=storyteller&token=${TOKENS.ops}`);
  t.teardown(() => worker.close());
  const receipt = await worker.call({ action: 'enqueue', queue, task, opts: { stream: true } });
  worker.send({ action: 'pull', queue });
  const { task: held } = await worker.next((f) => 'task' in f) as { task: Frame };
  if (held.stream !== true) throw new Error(`the worker got a task without stream: true: ${JSON.stringify(held)}`);
  return { worker, taskId: String(receipt.taskId) };
}

async function chunk(worker: TestSocket, taskId: string, data: unknown): Promise<void> {
  const receipt = await worker.call({ action: 'chunk', taskId, data });
  if (receipt.ok !== true) throw new Error(`chunk refused: ${JSON.stringify(receipt)}`);
}

async function binaryChunk(worker: TestSocket, taskId: string, data: Uint8Array, id: string): Promise<void> {
  worker.ws.send(encodeBinaryFrame({ action: 'chunk', taskId, id }, data), { binary: true });
  const receipt = await worker.next((f) => f.id === id);
  if (receipt.ok !== true) throw new Error(`binary chunk refused: ${JSON.stringify(receipt)}`);
}

t.test('a streamed task\'s output shows live, in order, text and binary, then its end with the result', async (t) => {
  const { page, problems } = await openDashboard(t, browser, `${pageUrl}&token=${TOKENS.ops}`);
  const { worker, taskId } = await streamedTask(t, 'story.tell', { prompt: 'a short one' });

  const panel = page.locator(`#task-streams article[data-task="${taskId}"]`);
  await panel.waitFor();
  t.equal((await panel.locator('.stream-queue').textContent())?.trim(), 'story.tell', 'the panel names the queue');
  await textBecomes(t, panel.locator('.stream-state'), 'streaming', 'it follows the stream while the task runs');
  const output = panel.locator('.stream-output');

  await chunk(worker, taskId, 'Once ');
  await textBecomes(t, output, 'Once', 'the first text chunk shows');
  await chunk(worker, taskId, 'upon a time');
  await textBecomes(t, output, 'Once upon a time', 'the next one is appended after it');
  await binaryChunk(worker, taskId, new Uint8Array([1, 2, 3]), 'b1');
  await textBecomes(t, output, 'Once upon a time[1 binary chunk, 3 B]', 'a binary chunk shows as its size');
  await binaryChunk(worker, taskId, new Uint8Array(1021), 'b2');
  await textBecomes(t, output, 'Once upon a time[2 binary chunks, 1.0 KiB]', 'a run of binary chunks is counted together');
  await chunk(worker, taskId, { line: 3 });
  await textBecomes(t, output, 'Once upon a time[2 binary chunks, 1.0 KiB]{"line":3}', 'JSON that is not a string shows as JSON, in its place');
  t.equal((await panel.locator('.stream-state').textContent())?.trim(), 'streaming', 'no end while the task runs');
  t.equal(await panel.locator('.stream-result').isHidden(), true, 'and no result');

  t.match(await worker.call({ action: 'ack', taskId, result: { words: 4 } }), { ok: true });
  await textBecomes(t, panel.locator('.stream-state'), 'ended: ok', 'the end shows');
  await textBecomes(t, panel.locator('.stream-result'), 'result: {"words":4}', 'with the task\'s result');
  t.equal(await panel.getAttribute('data-end'), 'ok');
  t.equal((await output.textContent())?.trim(), 'Once upon a time[2 binary chunks, 1.0 KiB]{"line":3}', 'the output stays, nothing twice');
  await screenshot(page, 'queue-task-stream');

  await panel.getByRole('button', { name: 'Close' }).click();
  await panel.waitFor({ state: 'detached' });
  t.same(problems, [], 'no console errors or failed requests');
});

t.test('a read-only token with the queue right follows too; a cancel ends the panel as cancelled', async (t) => {
  const { page, problems } = await openDashboard(t, browser, `${pageUrl}&token=${TOKENS.viewer}`);
  await textBecomes(t, page.locator('#who'), 'token viewer · read-only', 'the viewer');
  const { worker, taskId } = await streamedTask(t, 'story.read', { chapter: 2 });
  await chunk(worker, taskId, 'It was a dark ');

  const panel = page.locator(`#task-streams article[data-task="${taskId}"]`);
  const output = panel.locator('.stream-output');
  await textBecomes(t, output, 'It was a dark', 'chunks written before the panel opened are there');
  await chunk(worker, taskId, 'and stormy night');
  await textBecomes(t, output, 'It was a dark and stormy night', 'and live ones after them');

  const cancel = await fetch(`${gw.httpUrl}/queues/story.read/tasks/${taskId}/cancel`, { method: 'POST', headers: bearer(TOKENS.ops) });
  t.equal(cancel.status, 200, 'an admin cancels it');
  await worker.next((f) => 'revoke' in f);
  await textBecomes(t, panel.locator('.stream-state'), 'ended: cancelled', 'the panel shows it cancelled');
  t.equal(await panel.locator('.stream-result').isHidden(), true, 'with no result');
  t.same(problems, [], 'no console errors or failed requests');
});

t.test('a streamed task that starts and ends between two refreshes gets its panel from its end event, with its whole kept output', async (t) => {
  // Refreshes far apart: only the `queue.*` event can bring the task to the page.
  const { page, problems } = await openDashboard(t, browser, `${gw.httpUrl}/?refresh=600&token=${TOKENS.ops}`);
  await until(async () => {
    const state = await (await fetch(`${gw.httpUrl}/bus`, { headers: bearer(TOKENS.ops) })).json() as { subscriptions: Record<string, number> };
    return (state.subscriptions['queue.*'] ?? 0) > 0;
  }, 10_000, "the page's queue.* subscription");
  const { worker, taskId } = await streamedTask(t, 'story.quick', { prompt: 'short' });
  await chunk(worker, taskId, 'The ');
  await chunk(worker, taskId, 'end.');
  t.match(await worker.call({ action: 'ack', taskId, result: 'told' }), { ok: true });

  const panel = page.locator(`#task-streams article[data-task="${taskId}"]`);
  await textBecomes(t, panel.locator('.stream-state'), 'ended: ok', 'a panel for the task the page never saw active');
  t.equal((await panel.locator('.stream-output').textContent())?.trim(), 'The end.', 'with its output from the first chunk');
  await textBecomes(t, panel.locator('.stream-result'), 'result: "told"', 'and its result');
  t.same(problems, [], 'no console errors or failed requests');
});
