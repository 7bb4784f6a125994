import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Page } from 'playwright-core';
import t from 'tap';
import { BrokerClient, type BusEvent } from '../src/client/index.js';
import { edgeConfig } from './helpers/edge.js';
import { startRestartableGateway } from './helpers/restartable-gateway.js';
import { until } from './helpers/test-socket.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const bundle = join(root, 'public', 'build', 'brainstem-client.js');

/** `npm run build` writes the bundle; a single test run after an edit rebuilds a stale one. */
function ensureBundle(): void {
  const sources = [join(root, 'src', 'client'), join(root, 'src', 'bus')]
    .flatMap((dir) => readdirSync(dir).map((name) => statSync(join(dir, name)).mtimeMs));
  if (existsSync(bundle) && statSync(bundle).mtimeMs >= Math.max(...sources)) return;
  execFileSync('npm', ['run', '--silent', 'build:client'], { cwd: root, stdio: 'inherit' });
}

/** A plain static page (not the gateway) loading the bundle, as any web app would. */
async function servePage(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const page = '<!doctype html><meta charset="utf-8"><title>client</title>'
    + '<script type="module">import * as brainstem from "/brainstem-client.js"; window.brainstem = brainstem; document.title = "ready";</script>';
  const server = createServer((request, response) => {
    if (request.url === '/brainstem-client.js') {
      response.writeHead(200, { 'content-type': 'text/javascript' }).end(readFileSync(bundle));
    } else {
      response.writeHead(200, { 'content-type': 'text/html' }).end(page);
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise((r) => server.close(r)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

t.test('the bundled client runs in headless Chromium: pub/sub, request, enqueue, reconnect', async (t) => {
  ensureBundle();
  const source = readFileSync(bundle, 'utf8');
  t.notMatch(source, /\brequire\(|from\s*["']node:|import\(["']ws["']\)/, 'nothing from Node in the browser bundle');

  const pageUrl = await servePage(t);
  // A page of another origin may use the gateway only once listed (spec v2 §5).
  const gw = await startRestartableGateway(t, { edge: edgeConfig({ corsOrigins: [new URL(pageUrl).origin] }) });
  const profile = mkdtempSync(join(tmpdir(), 'brainstem-client-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 60_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  t.teardown(async () => {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  });
  // The context's own first tab: a second one would be a background tab, whose timers Chromium throttles.
  const page: Page = browser.pages()[0] ?? await browser.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  await page.goto(pageUrl);
  await page.waitForFunction(() => document.title === 'ready', undefined, { timeout: 30_000 });

  const node = new BrokerClient({ url: gw.busUrl, id: 'node-side', reconnect: { initialDelayMs: 50, maxDelayMs: 300 } });
  t.teardown(() => node.close());
  await node.connect();
  const fromBrowser: BusEvent[] = [];
  await node.subscribe('ui.>', (event) => { fromBrowser.push(event); });
  await node.respond('math.add', (event) => {
    const { a, b } = event.payload as { a: number; b: number };
    return a + b;
  });

  const clientId = await page.evaluate(async (url) => {
    const { BrokerClient } = (window as unknown as { brainstem: typeof import('../src/client/browser.js') }).brainstem;
    const client = new BrokerClient({ url, id: 'browser-page', reconnect: { initialDelayMs: 50, maxDelayMs: 300 } });
    const seen: unknown[] = [];
    (window as unknown as Record<string, unknown>).client = client;
    (window as unknown as Record<string, unknown>).seen = seen;
    await client.connect();
    await client.subscribe('agent.*', (event) => { seen.push(event.payload); });
    return client.clientId;
  }, gw.busUrl);
  t.match(clientId, /^[0-9a-f-]{36}$/, 'connected with the native WebSocket and got its welcome');

  const results = await page.evaluate(async () => {
    const client = (window as unknown as { client: import('../src/client/browser.js').BrokerClient }).client;
    const published = await client.publish('ui.click', { x: 1 });
    const reply = await client.request('math.add', { a: 2, b: 3 }, { timeout: 5000 });
    const taskId = await client.enqueue('browser.job', { from: 'page' });
    let noResponderCode = '';
    try {
      await client.request('nobody.home', {}, { timeout: 200 });
    } catch (err) {
      noResponderCode = (err as { code: string }).code;
    }
    return { published, reply: reply.payload, taskId, noResponderCode };
  });
  t.same(results.published, { delivered: 1 });
  t.equal(results.reply, 5, 'request/reply from the page');
  t.type(results.taskId, 'string', 'enqueue resolves with the taskId');
  t.equal(results.noResponderCode, 'NO_RESPONDERS');
  await until(() => fromBrowser.length === 1);
  t.match(fromBrowser[0], { type: 'ui.click', source: 'browser-page', payload: { x: 1 } });

  const worked: unknown[] = [];
  const worker = node.work('browser.job', (task) => { worked.push(task.payload); });
  await until(() => worked.length === 1);
  t.same(worked, [{ from: 'page' }], 'the task enqueued in the page reached a Node worker');
  await worker.stop();

  await node.publish('agent.reply', 'before');
  await page.waitForFunction(() => (window as unknown as { seen: unknown[] }).seen.length === 1, undefined, { polling: 50 });

  await gw.restart(200);
  await until(() => node.connected, 10_000);
  await page.waitForFunction(() => (window as unknown as { client: { connected: boolean } }).client.connected, undefined,
    { timeout: 10_000, polling: 50 });
  await until(async () => (await node.publish('agent.reply', 'after')).delivered === 1, 10_000);
  const seen = await page.evaluate(() => (window as unknown as { seen: unknown[] }).seen);
  t.equal(seen[0], 'before');
  t.equal(seen[seen.length - 1], 'after', 'the page reconnected and resubscribed by itself');
  t.same(pageErrors, [], 'no errors in the page');
  await page.evaluate(() => (window as unknown as { client: { close(): Promise<void> } }).client.close());
});
