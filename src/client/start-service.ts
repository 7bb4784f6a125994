import type { BusEvent } from '../bus/protocol.js';
import { BrokerClient, toBusUrl, type BrokerClientOptions } from './broker-client.js';
import type { Task } from './types.js';

export interface ServiceLog {
  info(message: string): void;
  error(message: string): void;
}

export interface HeartbeatOptions {
  /** Where to POST `{pid, name}`; default: the gateway's `/heartbeat`. */
  url?: string;
  /** Milliseconds between beats (default 3000, as the seed's HeartbeatClient). */
  interval?: number;
}

export interface ServiceOptions {
  /** The service's name: its bus name, its events' source, its heartbeat name. */
  id: string;
  queues?: string[];
  topics?: string[];
  handleEvent?: (event: BusEvent, client: BrokerClient) => unknown;
  /** Its return value is the ack's result; a throw fails the task with the error's message. */
  handleTask?: (task: Task, client: BrokerClient) => unknown;
  /** Tasks in hand at once, per queue (default 1). */
  concurrency?: number;
  /** `false`: no heartbeat (default: beat every 3 s). */
  heartbeat?: boolean | HeartbeatOptions;
  url?: string;
  token?: string;
  /** Further client options (reconnect, buffer, timeouts). */
  client?: Omit<BrokerClientOptions, 'url' | 'id' | 'token'>;
  /** Drain and exit on SIGINT/SIGTERM (default true). */
  exitOnSignal?: boolean;
  /** Longest wait for tasks in hand at shutdown before exiting anyway (default 30 s). */
  drainTimeoutMs?: number;
  log?: ServiceLog;
}

const consoleLog: ServiceLog = {
  info: (message) => console.log(message),
  error: (message) => console.error(message),
};

/** The gateway's HTTP address for a bus URL: ws://h:p/bus → http://h:p. */
export function httpBaseOf(busUrl: string): string {
  const url = toBusUrl(busUrl);
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
  url.pathname = url.pathname.replace(/\/bus\/?$/, '');
  url.search = '';
  url.hash = '';
  return url.toString().replace(/\/$/, '');
}

/**
 * Posts `{pid, name}` on an interval, as the seed's HeartbeatClient does,
 * so the heartbeat organ sees the service alive. Failures are reported
 * once per outage, not once per beat.
 */
function startHeartbeat(name: string, url: string, intervalMs: number, token: string | undefined, log: ServiceLog): () => void {
  let failing = false;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const beat = async () => {
    try {
      const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ pid: process.pid, name }) });
      if (!response.ok) throw new Error(`status ${response.status}`);
      await response.arrayBuffer();
      if (failing) log.info(`[${name}] heartbeat is back`);
      failing = false;
    } catch (err) {
      if (!failing) log.error(`[${name}] heartbeat to ${url} failed: ${(err as Error).message}`);
      failing = true;
    }
  };
  void beat();
  const timer = setInterval(() => void beat(), intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * The seed's service template, made durable: connects (waiting for the
 * gateway if it is not up yet), subscribes `topics` to `handleEvent`,
 * works `queues` with `handleTask`, heartbeats, and on SIGINT or SIGTERM
 * stops pulling, finishes the tasks in hand, and exits. Returns the client.
 */
export async function startService(options: ServiceOptions): Promise<BrokerClient> {
  const { id, queues = [], topics = [], concurrency = 1, log = consoleLog } = options;
  const handleEvent = options.handleEvent ?? (() => {});
  const handleTask = options.handleTask ?? (() => {});
  const clientOptions: BrokerClientOptions = { ...options.client, id };
  if (options.url !== undefined) clientOptions.url = options.url;
  if (options.token !== undefined) clientOptions.token = options.token;
  const client = new BrokerClient(clientOptions);
  client.on('error', (err) => log.error(`[${id}] ${err.message}`));
  client.on('disconnected', ({ code }) => log.info(`[${id}] disconnected from the gateway (${code}); reconnecting`));
  client.on('connected', ({ reconnected }) => {
    if (reconnected) log.info(`[${id}] reconnected to the gateway`);
  });

  await client.connect({ retry: true });
  log.info(`[${id}] connected to broker`);

  for (const topic of topics) {
    await client.subscribe(topic, async (event) => {
      try {
        await handleEvent(event, client);
      } catch (err) {
        log.error(`[${id}] event handler error on ${event.type}: ${(err as Error).message}`);
      }
    });
  }
  for (const queue of queues) {
    client.work(queue, (task) => handleTask(task, client), { concurrency });
  }

  let stopHeartbeat = () => {};
  if (options.heartbeat !== false) {
    const settings = typeof options.heartbeat === 'object' ? options.heartbeat : {};
    const url = settings.url ?? `${httpBaseOf(client.url)}/heartbeat`;
    stopHeartbeat = startHeartbeat(id, url, settings.interval ?? 3000, options.token, log);
  }
  client.on('closed', () => stopHeartbeat());

  if (options.exitOnSignal !== false) {
    const drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        log.error(`[${id}] ${signal} again: exiting without waiting`);
        process.exit(1);
      }
      stopping = true;
      log.info(`[${id}] ${signal}: stopping, finishing the tasks in hand`);
      const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), drainTimeoutMs).unref());
      void Promise.race([client.drain().then(() => 'drained' as const), timeout]).then((outcome) => {
        if (outcome === 'timeout') log.error(`[${id}] tasks still in hand after ${drainTimeoutMs} ms: exiting anyway`);
        else log.info(`[${id}] stopped`);
        process.exit(outcome === 'drained' ? 0 : 1);
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  return client;
}
