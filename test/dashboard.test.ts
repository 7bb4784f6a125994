import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  ensureDashboardBuilt, eventually, launchBrowser, openPage, PHONE, screenshot, textBecomes, type DashboardPage,
} from './helpers/dashboard-browser.js';
import { startGateway } from './helpers/gateway.js';
import { TestSocket } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;

ensureDashboardBuilt();

// An ecosystem file, so the instance column has a limit to show.
const ecosystemDir = mkdtempSync(join(tmpdir(), 'brainstem-dash-eco-'));
t.teardown(() => rmSync(ecosystemDir, { recursive: true, force: true }));
const ecosystemConfig = join(ecosystemDir, 'ecosystem.config.cjs');
writeFileSync(ecosystemConfig, 'module.exports = { apps: [{ name: "stt", script: "stt.js", instances: 2 }] };\n');

const gw = await startGateway(t, {
  ecosystemConfig,
  // A quiet service is stopped within seconds, with room for a loaded machine's late beats.
  heartbeatTimeoutMs: 3000,
  heartbeatCheckIntervalMs: 200,
  heartbeatStopGraceMs: 500,
  queueBackoffMs: 0,
});
const browser = await launchBrowser(t);
/** REST refreshes every second: the test waits for the page, not for a 5 s poll. */
const pageUrl = `${gw.httpUrl}/?refresh=1`;

async function dashboard(t: Test): Promise<DashboardPage> {
  const opened = await openPage(t, browser, pageUrl);
  await opened.page.locator('#link[data-state="live"]').waitFor();
  return opened;
}

async function post(path: string, body: unknown): Promise<{ status: number; body: Frame }> {
  const res = await fetch(`${gw.httpUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() as Frame };
}

t.test('the page loads with no console errors and shows every section, its own bus connection among them', async (t) => {
  const { page, problems } = await dashboard(t);
  for (const title of ['Services', 'Queues', 'Bus', 'Events']) {
    t.ok(await page.getByRole('heading', { name: title, exact: true }).isVisible(), `${title} is shown`);
  }
  await textBecomes(t, page.locator('#who'), 'auth off', 'the page says auth is off');
  const own = page.locator('#bus-rows tr', { hasText: 'this page' });
  await textBecomes(t, own.locator('td.name'), 'dashboard · this page', 'its own connection is listed by name');
  await textBecomes(t, own.locator('td.patterns'), /heartbeat\.\*/, 'with its subscriptions');
  const bus = await (await fetch(`${gw.httpUrl}/bus`)).json() as { connections: { name: string; subscriptions: string[] }[] };
  const mine = bus.connections.find((connection) => connection.name === 'dashboard');
  t.same(mine?.subscriptions.sort(), ['>', 'heartbeat.*', 'queue.*'], 'the gateway sees the page subscribed');
  const stylesheet = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  t.equal(stylesheet, 'rgb(13, 17, 23)', 'the dark stylesheet is applied');
  t.equal(await page.locator('#problem').textContent(), '', 'the client reported no error');
  await screenshot(page, 'dashboard-empty');
  t.same(problems, [], 'no console errors, page errors or failed requests');
});

t.test('a heartbeat makes the service row appear; a process that stops beating is stopped and turns red', async (t) => {
  const { page, problems } = await dashboard(t);
  const child = spawn('sleep', ['300'], { stdio: 'ignore' });
  const exited = once(child, 'exit');
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const pid = child.pid as number;
  let beating = true;
  const beats = (async () => {
    while (beating) {
      t.equal((await post('/heartbeat', { pid, name: 'stt' })).status, 200, 'beat accepted');
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  })();

  const row = page.locator(`#services-rows tr[data-pid="${pid}"]`);
  await row.locator('.status[data-status="alive"]').waitFor();
  t.equal((await row.locator('td.name').textContent())?.trim(), 'stt');
  await textBecomes(t, row.locator('td').nth(6), '1 / 2', 'one live instance of the two the ecosystem file allows');
  await textBecomes(t, row.locator('td').nth(5), /^[0-9] s ago$/, 'last beat seconds ago');
  t.match(await row.locator('td').nth(4).textContent(), /[KM]iB/, 'memory of the real process');
  await eventually(t, () => row.locator('.spark .line').first().getAttribute('points'), (points) => (points ?? '').split(' ').length >= 3,
    'the cpu sparkline draws the beats');
  await screenshot(page, 'services-alive');

  beating = false;
  await beats;
  await row.locator('.status[data-status="stopped"]').waitFor({ timeout: 30_000 });
  const [, signal] = await exited;
  t.equal(signal, 'SIGTERM', 'the gateway really stopped the process');
  const color = await row.locator('.status').evaluate((element) => getComputedStyle(element).color);
  t.equal(color, 'rgb(248, 81, 73)', 'stopped is red');
  await textBecomes(t, row.locator('td').nth(6), '0 / 2', 'no live instance left');
  await screenshot(page, 'services-stopped');
  t.same(problems, [], 'no console errors');
});

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

t.test('a published event appears in the tail under a matching filter and not under another; pause holds the view', async (t) => {
  const { page, problems } = await dashboard(t);
  const filter = page.locator('#tail-filter');
  const entry = (type: string) => page.locator(`#tail-list li[data-type="${type}"]`);

  await filter.fill('agent.>');
  await filter.press('Enter');
  await eventually(t, () => fetch(`${gw.httpUrl}/bus`).then((r) => r.json() as Promise<{ subscriptions: Record<string, number> }>),
    (bus) => bus.subscriptions['agent.>'] === 1 && bus.subscriptions['>'] === undefined, 'the page follows agent.> instead of >');
  t.equal((await post('/bus/publish', { type: 'agent.cephalon.reply', payload: { text: 'good evening' } })).status, 202);
  await entry('agent.cephalon.reply').waitFor();
  t.match(await entry('agent.cephalon.reply').textContent(), /good evening/, 'with its payload');
  await screenshot(page, 'tail-agent-filter');

  await page.getByRole('button', { name: 'heartbeat.*', exact: true }).click();
  await entry('agent.cephalon.reply').waitFor({ state: 'detached' });
  t.equal((await post('/bus/publish', { type: 'agent.cephalon.thought', payload: {} })).status, 202);
  t.equal((await post('/bus/publish', { type: 'heartbeat.marker', payload: { n: 1 } })).status, 202);
  await entry('heartbeat.marker').waitFor();
  // Events of one connection arrive in order: the earlier one would be drawn by now.
  t.equal(await entry('agent.cephalon.thought').count(), 0, 'an agent event does not show under heartbeat.*');

  await page.locator('#tail-pause').click();
  await textBecomes(t, page.locator('#tail-pause'), 'Resume', 'paused');
  t.equal((await post('/bus/publish', { type: 'heartbeat.marker2', payload: {} })).status, 202);
  await textBecomes(t, page.locator('#tail-pause'), 'Resume (1 new)', 'counts what arrived while paused');
  t.equal(await entry('heartbeat.marker2').count(), 0, 'without drawing it');
  await page.locator('#tail-pause').click();
  await entry('heartbeat.marker2').waitFor();

  await filter.fill('agent.>>');
  await filter.press('Enter');
  t.equal(await filter.getAttribute('aria-invalid'), 'true', 'a bad pattern is refused in place');
  t.match(await page.locator('#tail-problem').textContent(), /not a pattern/);
  t.same(problems, [], 'no console errors');
});

t.test('phone and laptop widths with every section filled', async (t) => {
  const { page, problems } = await dashboard(t);
  const listener = await TestSocket.open(`${gw.busUrl}?name=discord-bot`);
  t.teardown(() => listener.close());
  await listener.call({ action: 'subscribe', topic: 'agent.>' });
  await post('/heartbeat', { pid: process.pid, name: 'cephalon' });
  await page.locator(`#services-rows tr[data-pid="${process.pid}"]`).waitFor();
  await textBecomes(t, page.locator('#bus-rows tr', { hasText: 'discord-bot' }).locator('td.patterns'), 'agent.>', 'another connection and its pattern');
  await post('/bus/publish', { type: 'agent.tts.spoke', payload: { text: 'all systems nominal', ms: 812 } });
  await page.locator('#tail-list li[data-type="agent.tts.spoke"]').waitFor();
  await screenshot(page, 'dashboard-laptop');
  await screenshot(page, 'dashboard-phone', PHONE);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  t.ok(overflow <= 0, `no sideways scrolling of the page at phone width (overflow ${overflow}px)`);
  t.same(problems, [], 'no console errors');
});
