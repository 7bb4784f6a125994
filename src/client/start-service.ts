import type { BusEvent } from '../bus/protocol.js';
import { HeartbeatClient } from '../heartbeat/heartbeat-client.js';
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

  if (options.heartbeat !== false) {
    const settings = typeof options.heartbeat === 'object' ? options.heartbeat : {};
    // Report a failing heartbeat once per outage, not once per beat.
    let failing = false;
    const heartbeat = new HeartbeatClient({
      url: settings.url ?? `${httpBaseOf(client.url)}/heartbeat`,
      name: id,
      interval: settings.interval ?? 3000,
      ...(options.token === undefined ? {} : { token: options.token }),
      onHeartbeat: () => {
        if (failing) log.info(`[${id}] heartbeat is back`);
        failing = false;
      },
      onError: (err) => {
        if (!failing) log.error(`[${id}] heartbeat failed: ${err.message}`);
        failing = true;
      },
    });
    heartbeat.start();
    client.on('closed', () => heartbeat.stop());
  }

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
