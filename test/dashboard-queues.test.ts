import t from 'tap';
import { dashboardSession, PHONE, screenshot, textBecomes } from './helpers/dashboard-browser.js';
import { TestSocket } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;

const { gw, dashboard, post } = await dashboardSession(t, { queueBackoffMs: 0 });

t.test('an enqueued task raises the waiting count; a worker shows up, and its acks as completions per second', async (t) => {
  const { page, problems } = await dashboard(t);
  const queue = 'generate.image';
  const row = page.locator(`#queues-rows tr[data-queue="${queue}"]`);
  t.equal(await row.count(), 0, 'no such queue yet');

  t.equal((await post(`/queues/${queue}/tasks`, { task: { frame: 1 } })).status, 201);
  await textBecomes(t, row.locator('td[data-count="waiting"]'), '1', 'waiting 1 after the first enqueue');
  for (const frame of [2, 3]) t.equal((await post(`/queues/${queue}/tasks`, { task: { frame } })).status, 201);
  await textBecomes(t, row.locator('td[data-count="waiting"]'), '3', 'waiting 3 after two more');
  await textBecomes(t, row.locator('td').nth(6), '0', 'no worker yet');

  const worker = await TestSocket.open(`${gw.busUrl}?name=image-worker`);
  t.teardown(() => worker.close());
  worker.send({ action: 'pull', queue });
  const { task } = await worker.next((f) => 'task' in f) as { task: Frame };
  await textBecomes(t, row.locator('td[data-count="active"]'), '1', 'the pulled task is active');
  await textBecomes(t, row.locator('td[data-count="waiting"]'), '2', 'and no longer waiting');
  await textBecomes(t, row.locator('td').nth(6), '1', 'one connected worker');
  t.match(await row.locator('td').nth(6).getAttribute('title'), /image-worker/, 'named in the tooltip');

  t.match(await worker.call({ action: 'ack', taskId: task.id }), { ok: true });
  // One ack over the 10 s window: 0.1/s, until it ages out.
  await textBecomes(t, row.locator('td').nth(5), '0.1/s', 'the ack counts as a completion per second');
  await textBecomes(t, row.locator('td[data-count="active"]'), '0', 'nothing active after the ack');
  await textBecomes(t, row.locator('td[data-time="wait"]'), /^\d+(\.\d)? (ms|s|min) \/ \d+(\.\d)? (ms|s|min)$/, 'its wait p50 / p95 is shown');
  await textBecomes(t, row.locator('td[data-time="run"]'), /^\d+(\.\d)? (ms|s|min) \/ \d+(\.\d)? (ms|s|min)$/, 'its run p50 / p95 is shown');
  await screenshot(page, 'queues-waiting');
  t.same(problems, [], 'no console errors');
});

t.test('a dead-lettered task appears with its reason; Retry brings it back, Remove deletes one', async (t) => {
  const { page, problems } = await dashboard(t);
  const queue = 'generate.audio';
  const worker = await TestSocket.open(`${gw.busUrl}?name=tts-worker`);
  t.teardown(() => worker.close());
  const ids: string[] = [];
  for (const text of ['hello', 'goodbye']) {
    const receipt = await worker.call({ action: 'enqueue', queue, task: { text }, opts: { attempts: 1 } });
    ids.push(String(receipt.taskId));
    worker.send({ action: 'pull', queue });
    const { task } = await worker.next((f) => 'task' in f) as { task: Frame };
    t.match(await worker.call({ action: 'fail', taskId: task.id, reason: `voice model missing for ${text}` }), { ok: true });
  }
  const [retried, removed] = ids as [string, string];

  const dead = page.locator(`#failed-groups li[data-task="${retried}"]`);
  await dead.waitFor();
  t.equal((await dead.locator('.reason').textContent())?.trim(), 'voice model missing for hello', 'the reason is shown');
  t.equal((await dead.locator('.attempts').textContent())?.trim(), '1/1 attempts');
  await textBecomes(t, page.locator(`#queues-rows tr[data-queue="${queue}"] td[data-count="failed"]`), '2', 'two failed');
  await screenshot(page, 'queue-dead-letters');
  await screenshot(page, 'queue-dead-letters-phone', PHONE);

  await dead.getByRole('button', { name: 'Retry' }).click();
  await dead.waitFor({ state: 'detached' });
  await textBecomes(t, page.locator(`#queues-rows tr[data-queue="${queue}"] td[data-count="waiting"]`), '1', 'back to waiting');
  await textBecomes(t, page.locator(`#queues-rows tr[data-queue="${queue}"] td[data-count="failed"]`), '1', 'one failed left');
  const view = await (await fetch(`${gw.httpUrl}/queues/${queue}/tasks/${retried}`)).json() as Frame;
  t.equal(view.state, 'waiting', 'the gateway has it waiting again');
  worker.send({ action: 'pull', queue });
  const again = await worker.next((f) => 'task' in f) as { task: Frame };
  t.equal(again.task.id, retried, 'and a worker gets it again');

  const gone = page.locator(`#failed-groups li[data-task="${removed}"]`);
  await gone.getByRole('button', { name: 'Remove' }).click();
  await gone.waitFor({ state: 'detached' });
  t.equal((await fetch(`${gw.httpUrl}/queues/${queue}/tasks/${removed}`)).status, 404, 'removed for good');
  await textBecomes(t, page.locator(`#queues-rows tr[data-queue="${queue}"] td[data-count="failed"]`), '0', 'no failed left');
  t.equal(await page.locator('#failed-groups li').count(), 0, 'the dead-letter list is empty');
  t.same(problems, [], 'no console errors');
});

t.test('an active task shows its holder and progress; Cancel revokes it from its worker', async (t) => {
  const { page, problems } = await dashboard(t);
  const queue = 'render.video';
  const worker = await TestSocket.open(`${gw.busUrl}?name=render-worker`);
  t.teardown(() => worker.close());
  const { taskId } = await worker.call({ action: 'enqueue', queue, task: { scene: 7 } });
  worker.send({ action: 'pull', queue });
  await worker.next((f) => 'task' in f);
  t.match(await worker.call({ action: 'progress', taskId, progress: 0.4 }), { ok: true });

  const active = page.locator(`#active-groups li[data-task="${String(taskId)}"]`);
  await active.waitFor();
  await textBecomes(t, active.locator('.holder'), 'held by render-worker', 'the holder is named');
  await textBecomes(t, active.locator('.progress'), '40%', 'its progress is shown');
  await screenshot(page, 'queue-active-task');

  await active.getByRole('button', { name: 'Cancel' }).click();
  const revoke = await worker.next((f) => 'revoke' in f);
  t.same(revoke.revoke, { taskId, queue, reason: 'cancelled' }, 'the worker is told at once');
  await active.waitFor({ state: 'detached' });
  const view = await (await fetch(`${gw.httpUrl}/queues/${queue}/tasks/${String(taskId)}`)).json() as Frame;
  t.equal(view.state, 'cancelled', 'cancelled at the gateway');
  await textBecomes(t, page.locator(`#queues-rows tr[data-queue="${queue}"] td[data-count="active"]`), '0', 'nothing active');
  t.same(problems, [], 'no console errors');
});

t.test('phone and laptop widths with every section filled', async (t) => {
  const { page, problems } = await dashboard(t);
  const worker = await TestSocket.open(`${gw.busUrl}?name=video-worker`);
  t.teardown(() => worker.close());
  const { taskId } = await worker.call({ action: 'enqueue', queue: 'generate.video', task: { scene: 12 }, opts: { attempts: 1 } });
  worker.send({ action: 'pull', queue: 'generate.video' });
  await worker.next((f) => 'task' in f);
  await worker.call({ action: 'fail', taskId, reason: 'ffmpeg exited with code 1' });
  const listener = await TestSocket.open(`${gw.busUrl}?name=discord-bot`);
  t.teardown(() => listener.close());
  await listener.call({ action: 'subscribe', topic: 'agent.>' });
  t.equal((await post('/heartbeat', { pid: process.pid, name: 'cephalon' })).status, 200);
  await post('/bus/publish', { type: 'agent.tts.spoke', payload: { text: 'all systems nominal', ms: 812 } });

  await page.locator(`#services-rows tr[data-pid="${process.pid}"]`).waitFor();
  await page.locator(`#failed-groups li[data-task="${String(taskId)}"]`).waitFor();
  await textBecomes(t, page.locator('#bus-rows tr', { hasText: 'discord-bot' }).locator('td.patterns'), 'agent.>', 'another connection and its pattern');
  await page.locator('#tail-list li[data-type="agent.tts.spoke"]').waitFor();
  await screenshot(page, 'dashboard-laptop');
  await screenshot(page, 'dashboard-phone', PHONE);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  t.ok(overflow <= 0, `no sideways scrolling of the page at phone width (overflow ${overflow}px)`);
  t.same(problems, [], 'no console errors');
});
