import t from 'tap';
import { dashboardSession, openPage, screenshot, textBecomes } from './helpers/dashboard-browser.js';
import { bearer, edgeConfig, tokenSpec } from './helpers/edge.js';
import { TestSocket } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;

const TOKENS = { ops: 'ops-token-0123456789abcdef', viewer: 'viewer-token-0123456789ab' };
const { gw, browser, pageUrl } = await dashboardSession(t, {
  edge: edgeConfig({
    tokens: [
      tokenSpec('ops', TOKENS.ops, { admin: true }),
      // May look at the auth.* queues over REST (a queue right), follow only agent.> on the bus, change nothing.
      tokenSpec('viewer', TOKENS.viewer, { subscribe: ['agent.>'], queues: ['auth.*'] }),
    ],
  }),
});

/** The page's own 401s (asking for the session without a token) are how it learns to ask: not problems. */
const unexpected = (problems: string[]) => problems.filter((problem) => !/status of 401/.test(problem));

async function postAsOps(path: string, body: unknown): Promise<number> {
  const res = await fetch(`${gw.httpUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(TOKENS.ops) },
    body: JSON.stringify(body),
  });
  await res.body?.cancel();
  return res.status;
}

/** A task that failed its only attempt: dead-lettered, waiting for an admin. */
async function deadTask(queue: string): Promise<string> {
  const worker = await TestSocket.open(`${gw.busUrl}?name=ops-worker&token=${TOKENS.ops}`);
  const receipt = await worker.call({ action: 'enqueue', queue, task: { n: 1 }, opts: { attempts: 1 } });
  worker.send({ action: 'pull', queue });
  const { task } = await worker.next((f) => 'task' in f) as { task: Frame };
  await worker.call({ action: 'fail', taskId: task.id, reason: 'gpu out of memory' });
  worker.close();
  return String(receipt.taskId);
}

t.test('GET /dashboard/session: 401 without a known token; the token\'s name and admin flag with one', async (t) => {
  const anonymous = await fetch(`${gw.httpUrl}/dashboard/session`);
  t.equal(anonymous.status, 401);
  t.same(await anonymous.json(), { error: 'a token is required (Authorization: Bearer or ?token=)', code: 'UNAUTHORIZED' });
  const unknown = await fetch(`${gw.httpUrl}/dashboard/session`, { headers: bearer('nope') });
  t.match(await unknown.json(), { code: 'UNAUTHORIZED', error: 'unknown token' });
  const viewer = await fetch(`${gw.httpUrl}/dashboard/session`, { headers: bearer(TOKENS.viewer) });
  t.match(await viewer.json(), { auth: true, name: 'viewer', admin: false });
  const ops = await fetch(`${gw.httpUrl}/dashboard/session?token=${TOKENS.ops}`);
  t.match(await ops.json(), { auth: true, name: 'ops', admin: true, instanceLimits: {} });
});

t.test('a read-only token: asked once per tab, shows what it may, says what it may not', async (t) => {
  const queue = 'auth.render';
  const taskId = await deadTask(queue);
  const { page, problems } = await openPage(t, browser, pageUrl);

  await page.locator('#login').waitFor();
  t.ok(await page.locator('#board').isHidden(), 'nothing is shown before a token');
  t.match(await page.locator('#login-reason').textContent(), /needs a token/);
  await page.locator('#login-token').fill('not-a-token');
  await page.getByRole('button', { name: 'Open the dashboard' }).click();
  await textBecomes(t, page.locator('#login-reason'), /refused that token \(unknown token\)/, 'a wrong token is refused');

  await page.locator('#login-token').fill(TOKENS.viewer);
  await page.getByRole('button', { name: 'Open the dashboard' }).click();
  await page.locator('#link[data-state="live"]').waitFor();
  await textBecomes(t, page.locator('#who'), 'token viewer · read-only', 'says who it is');
  t.notOk(page.url().includes(TOKENS.viewer), 'the token is not in the address');

  await textBecomes(t, page.locator('#services-note'), /may not subscribe to heartbeat\.\*: rows refresh every 1 s/, 'services: not live, and why');
  await textBecomes(t, page.locator('#queues-note'), /Retry and Remove need an admin token/, 'queues: no admin buttons, and why');
  t.match(await page.locator('#queues-note').textContent(), /may not subscribe to queue\.\*/);
  await textBecomes(t, page.locator('#tail-problem'), /may not subscribe to >/, 'the tail: everything is not allowed');

  t.equal(await postAsOps('/heartbeat', { pid: process.pid, name: 'auth-gateway-tests' }), 200);
  await page.locator(`#services-rows tr[data-pid="${process.pid}"] .status[data-status="alive"]`).waitFor();
  const dead = page.locator(`#failed-groups li[data-task="${taskId}"]`);
  await dead.waitFor();
  t.equal((await dead.locator('.reason').textContent())?.trim(), 'gpu out of memory', 'dead letters are visible');
  t.ok(await dead.getByRole('button', { name: 'Retry' }).isDisabled(), 'Retry is disabled');
  t.ok(await dead.getByRole('button', { name: 'Remove' }).isDisabled(), 'Remove is disabled');
  t.equal(await dead.getByRole('button', { name: 'Retry' }).getAttribute('title'), 'needs an admin token');

  await page.getByRole('button', { name: 'agent.>', exact: true }).click();
  await page.locator('#tail-problem').waitFor({ state: 'hidden' });
  t.equal(await postAsOps('/bus/publish', { type: 'agent.cephalon.reply', payload: { text: 'visible to the viewer' } }), 202);
  await page.locator('#tail-list li[data-type="agent.cephalon.reply"]').waitFor();
  t.equal(await page.locator('#problem').textContent(), '', 'the client reported no error: each refused subscription was asked once');
  await screenshot(page, 'auth-read-only');

  await page.reload();
  await page.locator('#link[data-state="live"]').waitFor();
  t.ok(await page.locator('#login').isHidden(), 'a reload does not ask again: the tab keeps the token');
  await textBecomes(t, page.locator('#who'), 'token viewer · read-only', 'still the viewer');

  await page.getByRole('button', { name: 'Forget token' }).click();
  await page.locator('#login').waitFor();
  t.same(unexpected(problems), [], 'no console errors besides the 401s that ask for a token');
});

t.test('an admin token from ?token= is taken into the tab, out of the address, and Retry works', async (t) => {
  const queue = 'auth.speak';
  const taskId = await deadTask(queue);
  const { page, problems } = await openPage(t, browser, `${pageUrl}&token=${TOKENS.ops}`);
  await page.locator('#link[data-state="live"]').waitFor();
  t.notOk(page.url().includes('token='), 'the address no longer carries the token');
  t.match(page.url(), /refresh=1/, 'the other options stay');
  await textBecomes(t, page.locator('#who'), 'token ops · admin', 'an admin');
  await textBecomes(t, page.locator('#tail-status'), /shown/, 'the tail follows everything');
  t.ok(await page.locator('#tail-problem').isHidden(), 'an admin may follow >');

  const dead = page.locator(`#failed-groups li[data-task="${taskId}"]`);
  await dead.getByRole('button', { name: 'Retry' }).click();
  await dead.waitFor({ state: 'detached' });
  const view = await fetch(`${gw.httpUrl}/queues/${queue}/tasks/${taskId}`, { headers: bearer(TOKENS.ops) });
  t.match(await view.json(), { state: 'waiting' }, 'retried at the gateway');
  t.same(unexpected(problems), [], 'no console errors');
  t.same(problems, [], 'not even a 401: the token came with the address');
});
