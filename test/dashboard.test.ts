import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { beatingProcess } from './helpers/beating-process.js';
import { dashboardSession, eventually, screenshot, textBecomes } from './helpers/dashboard-browser.js';
import { TestSocket } from './helpers/test-socket.js';

// An ecosystem file, so the instance column has a limit to show.
const ecosystemDir = mkdtempSync(join(tmpdir(), 'brainstem-dash-eco-'));
t.teardown(() => rmSync(ecosystemDir, { recursive: true, force: true }));
const ecosystemConfig = join(ecosystemDir, 'ecosystem.config.cjs');
writeFileSync(ecosystemConfig, 'module.exports = { apps: [{ name: "stt", script: "stt.js", instances: 2 }] };\n');

const { gw, dashboard, post } = await dashboardSession(t, {
  ecosystemConfig,
  // A quiet service is stopped within seconds, with room for a loaded machine's late beats.
  heartbeatTimeoutMs: 3000,
  heartbeatCheckIntervalMs: 200,
  heartbeatStopGraceMs: 500,
});

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
  // A real service beating for itself: the gateway can prove its pid, read its figures and stop it.
  const service = await beatingProcess(t);
  const { pid } = service;
  let beating = true;
  const beats = (async () => {
    while (beating) {
      t.equal(await service.beat(`${gw.httpUrl}/heartbeat`, 'stt'), 200, 'beat accepted');
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  })();

  const row = page.locator(`#services-rows tr[data-pid="${pid}"]`);
  await row.locator('.status[data-status="alive"]').waitFor();
  t.equal((await row.locator('td.name').textContent())?.trim(), 'stt');
  await textBecomes(t, row.locator('td').nth(6), '1 / 2', 'one live instance of the two the ecosystem file allows');
  await textBecomes(t, row.locator('td').nth(5), /^[0-9] s ago$/, 'last beat seconds ago');
  await textBecomes(t, row.locator('td').nth(7), '–', 'no bus connection of its own');
  t.match(await row.locator('td').nth(4).textContent(), /[KM]iB/, 'memory of the real process');
  await eventually(t, () => row.locator('.spark .line').first().getAttribute('points'), (points) => (points ?? '').split(' ').length >= 3,
    'the cpu sparkline draws the beats');
  await screenshot(page, 'services-alive');

  beating = false;
  await beats;
  await row.locator('.status[data-status="stopped"]').waitFor({ timeout: 30_000 });
  t.equal((await service.exited).signal, 'SIGTERM', 'the gateway really stopped the process');
  const color = await row.locator('.status').evaluate((element) => getComputedStyle(element).color);
  t.equal(color, 'rgb(248, 81, 73)', 'stopped is red');
  await textBecomes(t, row.locator('td').nth(6), '0 / 2', 'no live instance left');
  await screenshot(page, 'services-stopped');
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

  // A burst larger than the tail keeps: the oldest go, the newest are drawn first.
  const burst = await TestSocket.open(`${gw.busUrl}?name=burst`);
  t.teardown(() => burst.close());
  for (let i = 1; i <= 1500; i++) burst.send({ action: 'publish', message: { type: 'heartbeat.burst', payload: { i } } });
  await textBecomes(t, page.locator('#tail-status'), '200 shown · 1000/1000 kept', 'kept in memory up to its cap, 200 drawn');
  // The cap is reached before the burst ends: wait for its last event.
  await textBecomes(t, page.locator('#tail-list li'), /\{"i":1500\}/, 'the newest first');
  t.equal(await page.locator('#tail-list li').count(), 200, 'no more rows than it draws');

  await filter.fill('agent.>>');
  await filter.press('Enter');
  t.equal(await filter.getAttribute('aria-invalid'), 'true', 'a bad pattern is refused in place');
  t.match(await page.locator('#tail-problem').textContent(), /not a pattern/);
  t.same(problems, [], 'no console errors');
});

// Last: its heartbeat record goes stale after the test, and the events that follow would land in the tail tests.
t.test("a service's bus connections and the tasks they hold show in its row (GET /services)", async (t) => {
  const { page, problems } = await dashboard(t);
  // This test process is the service: it beats for itself and connects with its own pid, so the link is proven.
  const beat = () => fetch(`${gw.httpUrl}/heartbeat`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pid: process.pid, name: 'cephalon' }),
  });
  t.equal((await beat()).status, 200);
  const worker = await TestSocket.open(`${gw.busUrl}?name=cephalon&pid=${process.pid}`);
  t.teardown(() => worker.close());
  await worker.call({ action: 'subscribe', topic: 'agent.>' });
  await worker.call({ action: 'enqueue', queue: 'agent.think', task: { input: 'hi' } });
  worker.send({ action: 'pull', queue: 'agent.think' });
  await worker.next((frame) => 'task' in frame);

  const row = page.locator(`#services-rows tr[data-pid="${process.pid}"]`);
  await textBecomes(t, row.locator('td').nth(7), '1 conn · 1 task', 'its connection and the task it holds');
  t.match(await row.locator('td').nth(7).getAttribute('title'), /linked to its heartbeat[\s\S]*subscribes agent\.>[\s\S]*holds agent\.think/,
    'the tooltip says what it subscribes and holds');
  t.same(problems, [], 'no console errors');
});
