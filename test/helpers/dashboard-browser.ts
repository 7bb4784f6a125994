import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import type { BuildOptions } from '../../app.js';
import { startGateway } from './gateway.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

const root = fileURLToPath(new URL('../../', import.meta.url));
export const SCREENSHOTS = join(root, 'test', 'screenshots');

export const LAPTOP = { width: 1280, height: 860 };
export const PHONE = { width: 390, height: 844 };

/** Loaded machines: every wait in a browser test gets this much before it counts as a failure. */
export const BROWSER_WAIT_MS = 30_000;

function newestChange(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) newest = Math.max(newest, statSync(join(dir, name)).mtimeMs);
  return newest;
}

/**
 * The page loads `public/build/`, which `npm run build` writes. When it is
 * missing or older than the sources (a single test file run after an edit),
 * the two build steps run first, so the browser never tests yesterday's code.
 */
export function ensureDashboardBuilt(): void {
  const bundles = ['dashboard.js', 'brainstem-client.js'].map((name) => join(root, 'public', 'build', name));
  const built = bundles.every((bundle) => existsSync(bundle)) ? Math.min(...bundles.map((bundle) => statSync(bundle).mtimeMs)) : 0;
  const sources = Math.max(...['dashboard', 'client', 'bus'].map((dir) => newestChange(join(root, 'src', dir))));
  if (built >= sources) return;
  for (const script of ['build:client', 'build:dashboard']) execFileSync('npm', ['run', '--silent', script], { cwd: root, stdio: 'inherit' });
}

/** Debian's chromium, headless, with a fresh profile; closed (and the profile removed) at teardown. */
export async function launchBrowser(t: Teardown): Promise<BrowserContext> {
  const profile = mkdtempSync(join(tmpdir(), 'brainstem-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    colorScheme: 'dark',
    viewport: LAPTOP,
    timeout: 60_000,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  context.setDefaultTimeout(BROWSER_WAIT_MS);
  t.teardown(async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  });
  return context;
}

export interface DashboardPage {
  page: Page;
  /** Console errors, uncaught exceptions and failed requests seen so far. */
  problems: string[];
}

/** A new tab (its own sessionStorage) recording everything that went wrong in it. */
export async function openPage(t: Teardown, context: BrowserContext, url: string): Promise<DashboardPage> {
  const page = await context.newPage();
  t.teardown(() => page.close());
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`uncaught: ${err.message}`));
  page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()} ${request.failure()?.errorText ?? ''}`));
  await page.goto(url);
  return { page, problems };
}

/** The dashboard in a new tab, once its bus connection is up. */
export async function openDashboard(t: Teardown, context: BrowserContext, url: string): Promise<DashboardPage> {
  const opened = await openPage(t, context, url);
  await opened.page.locator('#link[data-state="live"]').waitFor();
  return opened;
}

export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() as Record<string, unknown> };
}

/**
 * A gateway, a browser, and the dashboard's URL on that gateway. The page
 * refreshes REST every second (`?refresh=1`): tests wait for the page, not
 * for a 5 s poll. `dashboard(t)` opens a tab once the page is live; `post`
 * sends JSON to the gateway.
 */
export async function dashboardSession(t: Teardown, options: BuildOptions = {}) {
  ensureDashboardBuilt();
  const gw = await startGateway(t, options);
  const browser = await launchBrowser(t);
  const pageUrl = `${gw.httpUrl}/?refresh=1`;
  return {
    gw,
    browser,
    pageUrl,
    dashboard: (t: Teardown) => openDashboard(t, browser, pageUrl),
    post: (path: string, body: unknown) => postJson(`${gw.httpUrl}${path}`, body),
  };
}

export async function screenshot(page: Page, name: string, viewport = LAPTOP): Promise<string> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.setViewportSize(viewport);
  await page.screenshot({ path, fullPage: true });
  return path;
}

interface Assertions {
  pass(message: string): void;
}

/** Polls `read` until `accept` holds (a passing assertion named `what`); rejects with the last value seen. */
export async function eventually<T>(
  t: Assertions, read: () => Promise<T>, accept: (value: T) => boolean, what: string, timeoutMs = BROWSER_WAIT_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const last = await read();
    if (accept(last)) {
      t.pass(what);
      return last;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last seen ${JSON.stringify(last)})`);
    await sleep(100);
  }
}

/** Waits until the element's text (trimmed) is `expected`. */
export function textBecomes(t: Assertions, locator: Locator, expected: string | RegExp, what: string): Promise<string> {
  return eventually(
    t,
    async () => ((await locator.count()) > 0 ? ((await locator.first().textContent()) ?? '').trim() : '(absent)'),
    (text) => (typeof expected === 'string' ? text === expected : expected.test(text)),
    what,
  );
}
