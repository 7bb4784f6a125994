/**
 * The dashboard at `/`: services, queues, the bus and a live event tail.
 * Counts come from the REST routes on a modest interval; the bus (through
 * the browser build of the TypeScript client) keeps it live in between.
 *
 * Address options: `?token=` (taken once into the tab's session),
 * `?refresh=<seconds>` (REST interval, default 5), `?filter=<pattern>`
 * (the tail's first filter).
 */
import { BrokerClient, type BusEvent } from '../client/browser.js';
import { Api, ApiError, type DashboardSession } from './api.js';
import { BusView } from './bus-view.js';
import { byId, renderScheduler, setText } from './dom.js';
import { EventTail } from './event-tail.js';
import { lastRetained } from './retained-history.js';
import { Poller } from './poller.js';
import { QueuesView } from './queues-view.js';
import { Section } from './section.js';
import { streamedTaskOf, TaskStreamPanels } from './task-stream-panels.js';
import { ServicesView } from './services-view.js';
import { TokenStore } from './token-store.js';

const DEFAULT_REFRESH_S = 5;
/** Dead-lettered tasks listed per queue (the newest). */
const FAILED_SHOWN = 20;
const RENDER_MIN_INTERVAL_MS = 100;
/** Retained events the tail opens with. */
const TAIL_HISTORY = 100;

const params = new URLSearchParams(location.search);
const tokens = new TokenStore(sessionStorage);
tokens.adoptFromAddress(location, history);
const api = new Api(location.href, () => tokens.get());

function refreshMs(): number {
  const seconds = Number(params.get('refresh') ?? DEFAULT_REFRESH_S);
  return Number.isFinite(seconds) && seconds >= 1 && seconds <= 3600 ? seconds * 1000 : DEFAULT_REFRESH_S * 1000;
}

function busUrl(): string {
  const url = new URL('bus', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = '';
  url.hash = '';
  return url.toString();
}

function problemText(err: unknown): string {
  if (err instanceof ApiError && err.status === 403) return `this token may not see this (${err.message})`;
  return err instanceof Error ? err.message : String(err);
}

/** The token form: shown when the gateway answers 401, until it accepts a token. */
function askForToken(reason: string): void {
  const form = byId<HTMLFormElement>('login');
  const input = byId<HTMLInputElement>('login-token');
  setText(byId('login-reason'), reason);
  byId('board').hidden = true;
  form.hidden = false;
  input.value = '';
  input.focus();
  form.onsubmit = (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (token === '') return;
    tokens.set(token);
    form.hidden = true;
    void boot();
  };
}

async function boot(): Promise<void> {
  let session: DashboardSession;
  try {
    session = await api.session();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      const hadToken = tokens.get() !== null;
      tokens.forget();
      askForToken(hadToken ? `The gateway refused that token (${err.message}).` : 'This gateway needs a token. It is kept for this tab only.');
      return;
    }
    setText(byId('link'), 'gateway unreachable');
    byId('link').dataset.state = 'offline';
    window.setTimeout(() => void boot(), 3000);
    return;
  }
  await run(session);
}

function showIdentity(session: DashboardSession): void {
  const who = byId('who');
  if (!session.auth) setText(who, 'auth off');
  else setText(who, `token ${session.name ?? '?'}${session.admin ? ' · admin' : ' · read-only'}`);
  const forget = byId<HTMLButtonElement>('forget');
  forget.hidden = !session.auth;
  forget.onclick = () => {
    tokens.forget();
    location.reload();
  };
}

/** Follows `pattern` for a section; says in the section what is lost when the token may not. */
async function follow(client: BrokerClient, section: Section, pattern: string, handler: (event: BusEvent) => void, without: string): Promise<boolean> {
  try {
    await client.subscribe(pattern, handler);
    section.setNote(pattern, null);
    return true;
  } catch (err) {
    const forbidden = (err as { code?: unknown }).code === 'FORBIDDEN';
    section.setNote(pattern, forbidden
      ? `This token may not subscribe to ${pattern}: ${without}`
      : `Not live (${(err as Error).message}): ${without}`);
    return false;
  }
}

async function run(session: DashboardSession): Promise<void> {
  showIdentity(session);
  byId('board').hidden = false;
  const interval = refreshMs();
  const every = `${interval / 1000} s`;
  const token = tokens.get();
  const client = new BrokerClient({ url: busUrl(), id: 'dashboard', ...(token === null ? {} : { token }) });
  const sections = { services: new Section('services'), queues: new Section('queues'), bus: new Section('bus') };

  let lastFetch = 0;
  const updated = byId('updated');
  const render = renderScheduler(() => {
    const now = Date.now();
    services.render(now);
    queues.render(now);
    bus.render(now);
    tail.render();
    setText(updated, lastFetch === 0 ? '' : `updated ${Math.max(0, Math.round((now - lastFetch) / 1000))} s ago · every ${every}`);
  }, RENDER_MIN_INTERVAL_MS);

  async function fetchInto(section: Section, fetch: () => Promise<void>): Promise<void> {
    try {
      await fetch();
      section.fetched();
      lastFetch = Date.now();
    } catch (err) {
      section.failed(`not refreshed: ${problemText(err)}`);
    }
    render();
  }

  const services = new ServicesView(session.instanceLimits, render);
  const servicePoller = new Poller(() => fetchInto(sections.services, async () => {
    const [records, directory] = await Promise.all([api.heartbeats(), api.services()]);
    services.update(records, directory);
  }), interval);

  const queues = new QueuesView(session.admin, {
    retry: (queue, taskId) => api.retryTask(queue, taskId),
    remove: (queue, taskId) => api.removeTask(queue, taskId),
    cancel: (queue, taskId) => api.cancelTask(queue, taskId),
  }, render, () => queuePoller.soon(0));
  const streams = new TaskStreamPanels((task) => api.taskStreamUrl(task.queue, task.id));
  const queuePoller = new Poller(() => fetchInto(sections.queues, async () => {
    const summaries = await api.queues();
    const listed = summaries.filter((summary) => summary.counts.failed > 0 || summary.counts.active > 0);
    const details = await Promise.all(listed.map((summary) => api.queue(summary.name, FAILED_SHOWN)));
    streams.show(details.flatMap((detail) => detail.tasks.active.filter((task) => task.stream === true)));
    queues.update(summaries, new Map(details.map((detail) => [detail.name, detail.tasks.failed])),
      new Map(details.map((detail) => [detail.name, detail.tasks.active])));
  }), interval);
  if (!session.admin) sections.queues.setNote('admin', 'Retry and Remove need an admin token: this one may only look.');

  const bus = new BusView(() => client.clientId, render);
  const busPoller = new Poller(() => fetchInto(sections.bus, async () => bus.update(await api.bus(), Date.now())), interval);
  const history = { rules: async () => (await api.bus()).retained ?? [], history: (topic: string, last: number) => api.history(topic, last) };
  const tail = new EventTail(client, params.get('filter') ?? '>', render, () => busPoller.soon(), (pattern) => lastRetained(history, pattern, TAIL_HISTORY));

  const pollers = [servicePoller, queuePoller, busPoller];
  for (const poller of pollers) poller.start();
  window.setInterval(render, 1000);

  const link = byId('link');
  const showLink = (state: string, text: string) => {
    link.dataset.state = state;
    setText(link, text);
  };
  client.on('connected', ({ reconnected }) => {
    showLink('live', 'live');
    // What happened while the page was away arrived as no event: fetch it.
    if (reconnected) for (const poller of pollers) poller.soon(0);
  });
  client.on('disconnected', () => showLink('offline', 'offline'));
  client.on('reconnecting', ({ attempt }) => showLink('connecting', `reconnecting (${attempt})`));
  client.on('error', (err) => setText(byId('problem'), err.message));

  // Subscribing once connected: a subscription asked for earlier would be sent twice on open.
  await client.connect({ retry: true });
  await Promise.allSettled([
    follow(client, sections.services, 'heartbeat.*', (event) => {
      services.onEvent(event);
      if (event.type === 'heartbeat.down') servicePoller.soon();
    }, `rows refresh every ${every} instead of live.`),
    follow(client, sections.queues, 'queue.*', (event) => {
      queues.onEvent(event, Date.now());
      // A streamed task that started and ended between two refreshes was never seen active.
      const ended = streamedTaskOf(event);
      if (ended) streams.show([ended]);
      queuePoller.soon();
    }, `counts refresh every ${every} and completions per second are not counted.`).then((live) => {
      if (live) queues.startCounting(Date.now());
    }),
    tail.start(),
  ]);
  // The bus card shows this page's own subscriptions without waiting for the next refresh.
  busPoller.soon(0);
}

void boot();
