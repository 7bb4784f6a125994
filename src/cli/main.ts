import { parseArgs } from 'node:util';
import { BrokerClient, type EnqueueOptions } from '../client/index.js';
import { httpBaseOf } from '../client/start-service.js';
import { followStream } from './follow-stream.js';
import { commandHelp, isCommand, usage, usageOf, version } from './help.js';
import { followRetained } from './resuming-subscription.js';
import { readStdin } from './stdin.js';

/** A failure the user caused or can fix: printed as one line, exit status 1. */
export class CliError extends Error {}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CliError(`invalid JSON for the ${what}: ${(err as Error).message.replace(/\s+/g, ' ')}`);
  }
}

/** The payloads of a command: the argument, else stdin (one JSON value, or one per line), else none. */
async function payloads(argument: string | undefined, what: string): Promise<unknown[] | null> {
  if (argument !== undefined && argument !== '-') return [parseJson(argument, what)];
  const input = await readStdin(argument === '-');
  if (input === null) return null;
  const text = input.trim();
  if (text === '') {
    if (argument === '-') throw new CliError(`no JSON on stdin for the ${what}`);
    return null;
  }
  try {
    return [JSON.parse(text)];
  } catch {
    // Not one value: JSON Lines, one value per line.
    return text.split('\n').filter((line) => line.trim() !== '').map((line, i) => parseJson(line, `${what} on stdin line ${i + 1}`));
  }
}

function positiveInteger(raw: string | undefined, option: string, allowZero = false): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || (!allowZero && value === 0) || !Number.isSafeInteger(value)) {
    throw new CliError(`${option} must be a whole number${allowZero ? '' : ' above 0'}, not ${JSON.stringify(raw)}`);
  }
  return value;
}

interface Context {
  url: string;
  token: string | undefined;
  name: string;
  out: (line: string) => void;
  /** Text or bytes on stdout as they are. */
  raw: (data: string | Uint8Array) => void;
  err: (line: string) => void;
}

function needPositionals(positionals: string[], min: number, max: number, command: string): void {
  if (positionals.length < min || positionals.length > max) {
    throw new CliError(`wrong arguments. Usage: ${usageOf(command)}`);
  }
}

async function connected(context: Context, reconnect: boolean): Promise<BrokerClient> {
  const client = new BrokerClient({
    url: context.url,
    id: context.name,
    ...(context.token === undefined ? {} : { token: context.token }),
    ...(reconnect ? {} : { reconnect: false as const }),
  });
  client.on('error', (err) => context.err(`brainstem: ${err.message}`));
  await client.connect();
  return client;
}

async function http(context: Context, path: string, method: 'GET' | 'POST' = 'GET'): Promise<unknown> {
  const url = `${httpBaseOf(context.url)}${path}`;
  const headers: Record<string, string> = { accept: 'application/json' };
  if (context.token) headers.authorization = `Bearer ${context.token}`;
  let response: Response;
  try {
    response = await fetch(url, { headers, method });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new CliError(`cannot reach ${url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
  }
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: reported as text below.
  }
  if (!response.ok) {
    const message = typeof body === 'object' && body !== null && 'error' in body ? String((body as { error: unknown }).error) : text.slice(0, 200);
    throw new CliError(`${url} answered ${response.status}: ${message}`);
  }
  return body;
}

async function pub(context: Context, positionals: string[]): Promise<void> {
  needPositionals(positionals, 1, 2, 'pub');
  const [topic, argument] = positionals as [string, string | undefined];
  const values = (await payloads(argument, 'payload')) ?? [null];
  const client = await connected(context, false);
  try {
    for (const value of values) {
      const receipt = await client.publish(topic, value);
      context.out(JSON.stringify({ ok: true, delivered: receipt.delivered }));
    }
  } finally {
    await client.close();
  }
}

async function enqueue(context: Context, positionals: string[], values: Record<string, string | undefined>, stream: boolean): Promise<void> {
  needPositionals(positionals, 1, 2, 'enqueue');
  const [queue, argument] = positionals as [string, string | undefined];
  const opts: EnqueueOptions = {};
  const priority = positiveInteger(values.priority, '--priority', true);
  const delay = positiveInteger(values.delay, '--delay', true);
  const attempts = positiveInteger(values.attempts, '--attempts');
  if (priority !== undefined) opts.priority = priority;
  if (delay !== undefined) opts.delay = delay;
  if (attempts !== undefined) opts.attempts = attempts;
  if (values['job-id'] !== undefined) opts.jobId = values['job-id'];
  const tasks = (await payloads(argument, 'task')) ?? [null];
  const client = await connected(context, false);
  try {
    for (const task of tasks) {
      if (stream) context.out((await client.enqueue(queue, task, { ...opts, stream: true })).taskId);
      else context.out(await client.enqueue(queue, task, Object.keys(opts).length > 0 ? opts : undefined));
    }
  } finally {
    await client.close();
  }
}

async function request(context: Context, positionals: string[], values: Record<string, string | undefined>): Promise<void> {
  needPositionals(positionals, 1, 2, 'request');
  const [type, argument] = positionals as [string, string | undefined];
  const timeout = positiveInteger(values.timeout, '--timeout') ?? 10_000;
  const given = await payloads(argument, 'payload');
  if (given && given.length > 1) throw new CliError('request takes one JSON value, not several');
  const client = await connected(context, false);
  try {
    context.out(JSON.stringify(await client.request(type, given?.[0] ?? null, { timeout })));
  } finally {
    await client.close();
  }
}

/** `--since OFFSET` or `--last N`, or null when neither is given. */
function historyStart(values: Record<string, string | undefined>): { since: string } | { last: number } | null {
  if (values.since !== undefined && values.last !== undefined) throw new CliError('give --since or --last, not both');
  if (values.since !== undefined) return { since: values.since };
  const last = positiveInteger(values.last, '--last', true);
  return last === undefined ? null : { last };
}

async function history(context: Context, positionals: string[], values: Record<string, string | undefined>): Promise<void> {
  needPositionals(positionals, 1, 1, 'history');
  const start = historyStart(values);
  const query = new URLSearchParams({ topic: positionals[0] as string });
  if (start && 'since' in start) query.set('since', start.since);
  if (start && 'last' in start) query.set('last', String(start.last));
  const read = await http(context, `/bus/history?${query.toString()}`) as { events: unknown[]; offset: string; gap: boolean };
  for (const event of read.events) context.out(JSON.stringify(event));
  context.err(`brainstem: ${read.events.length} events; newest offset ${read.offset}${read.gap ? '; some after the offset asked were trimmed (gap)' : ''}`);
}

/** `sub PATTERN --since/--last`: replay, then live, resuming after reconnects. */
async function subFrom(context: Context, pattern: string, start: { since: string } | { last: number }, count: number | undefined): Promise<void> {
  let finish: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    finish = resolve;
  });
  let seen = 0;
  const stop = () => finish();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  process.stdout.once('error', stop);
  try {
    await followRetained({
      busUrl: `${httpBaseOf(context.url).replace(/^http/, 'ws')}/bus`,
      token: context.token,
      name: context.name,
      pattern,
      start,
      stopped,
      onEvent: (event) => {
        if (count !== undefined && seen >= count) return;
        seen++;
        context.out(JSON.stringify(event));
        if (count !== undefined && seen >= count) finish();
      },
      onStatus: (line) => context.err(`brainstem: ${line}`),
    });
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

async function sub(context: Context, positionals: string[], values: Record<string, string | undefined>): Promise<void> {
  if (positionals.length === 0) throw new CliError(`wrong arguments. Usage: ${usageOf('sub')}`);
  const count = positiveInteger(values.count, '--count');
  const start = historyStart(values);
  if (start) {
    if (positionals.length > 1) throw new CliError('--since and --last take one pattern (offsets belong to one retention rule)');
    await subFrom(context, positionals[0] as string, start, count);
    return;
  }
  const client = await connected(context, true);
  let seen = 0;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const onEvent = (event: unknown) => {
    if (count !== undefined && seen >= count) return;
    seen++;
    context.out(JSON.stringify(event));
    if (count !== undefined && seen >= count) finish();
  };
  client.on('disconnected', ({ code, reason }) => context.err(`brainstem: disconnected (${code}${reason ? ` ${reason}` : ''}); reconnecting`));
  client.on('connected', ({ reconnected }) => {
    if (reconnected) context.err('brainstem: reconnected');
  });
  try {
    await Promise.all(positionals.map((pattern) => client.subscribe(pattern, onEvent)));
  } catch (err) {
    await client.close();
    throw err;
  }
  context.err(`brainstem: subscribed to ${positionals.join(' ')} at ${context.url}`);
  const stop = () => finish();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // `brainstem sub … | head -1`: a closed stdout is a normal end.
  process.stdout.once('error', stop);
  await finished;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  await client.close();
}

async function follow(context: Context, positionals: string[], values: Record<string, string | undefined>, raw: boolean): Promise<number> {
  needPositionals(positionals, 1, 1, 'follow');
  const from = positiveInteger(values.from, '--from') ?? 1;
  const client = await connected(context, true);
  // Until it stops: its own close is no drop to resume from.
  let following = true;
  client.on('disconnected', ({ code, reason }) => {
    if (following) context.err(`brainstem: disconnected (${code}${reason ? ` ${reason}` : ''}); resuming`);
  });
  client.on('connected', ({ reconnected }) => {
    if (reconnected) context.err('brainstem: reconnected');
  });
  let stop: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    stop = () => {
      following = false;
      resolve();
    };
  });
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // `brainstem follow … | head -1`: a closed stdout is a normal end.
  process.stdout.once('error', stop);
  try {
    return await followStream(client, { taskId: positionals[0] as string, from, raw, stopped }, {
      line: context.out,
      raw: context.raw,
      status: (line) => context.err(`brainstem: ${line}`),
    });
  } finally {
    following = false;
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await client.close();
  }
}

async function start(values: Record<string, string | undefined>): Promise<void> {
  const env = { ...process.env };
  if (values.port !== undefined) env.PORT = String(positiveInteger(values.port, '--port', true));
  if (values.host !== undefined) env.HOST = values.host;
  const { startGateway } = await import('../gateway-process.js');
  await startGateway(env);
}

/** Runs the command line; resolves with the exit status, or null when the process keeps running (start). */
export async function main(argv: string[]): Promise<number | null> {
  const context: Context = {
    url: process.env.BRAINSTEM_URL || 'ws://127.0.0.1:8080/bus',
    token: process.env.BRAINSTEM_TOKEN || undefined,
    name: 'brainstem-cli',
    out: (line) => process.stdout.write(`${line}\n`),
    raw: (data) => process.stdout.write(data),
    err: (line) => process.stderr.write(`${line}\n`),
  };
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args: argv,
        allowPositionals: true,
        strict: true,
        options: {
          url: { type: 'string' },
          token: { type: 'string' },
          name: { type: 'string' },
          help: { type: 'boolean', short: 'h' },
          version: { type: 'boolean', short: 'v' },
          count: { type: 'string' },
          since: { type: 'string' },
          last: { type: 'string' },
          timeout: { type: 'string' },
          priority: { type: 'string' },
          delay: { type: 'string' },
          attempts: { type: 'string' },
          'job-id': { type: 'string' },
          stream: { type: 'boolean' },
          from: { type: 'string' },
          raw: { type: 'boolean' },
          port: { type: 'string' },
          host: { type: 'string' },
        },
      });
    } catch (err) {
      throw new CliError(`${(err as Error).message.split('\n')[0]} (see brainstem --help)`);
    }
    const { values, positionals } = parsed;
    const [command, ...rest] = positionals;
    if (values.version) {
      context.out(version());
      return 0;
    }
    if (command === 'help') {
      context.out(rest[0] && isCommand(rest[0]) ? commandHelp(rest[0]) : usage());
      return 0;
    }
    if (values.help || command === undefined) {
      context.out(command && isCommand(command) ? commandHelp(command) : usage());
      return command === undefined && !values.help ? 1 : 0;
    }
    if (values.url !== undefined) context.url = values.url;
    if (values.token !== undefined) context.token = values.token;
    if (values.name !== undefined) context.name = values.name;
    const strings = values as Record<string, string | undefined>;
    switch (command) {
      case 'start':
        await start(strings);
        return null;
      case 'pub':
        await pub(context, rest);
        return 0;
      case 'sub':
        await sub(context, rest, strings);
        return 0;
      case 'history':
        await history(context, rest, strings);
        return 0;
      case 'request':
        await request(context, rest, strings);
        return 0;
      case 'enqueue':
        await enqueue(context, rest, strings, values.stream === true);
        return 0;
      case 'follow':
        return await follow(context, rest, strings, values.raw === true);
      case 'queues':
        needPositionals(rest, 0, 1, 'queues');
        context.out(JSON.stringify(await http(context, rest[0] ? `/queues/${encodeURIComponent(rest[0])}` : '/queues'), null, 2));
        return 0;
      case 'task':
      case 'cancel': {
        needPositionals(rest, 2, 2, command);
        const [queue, id] = rest.map(encodeURIComponent) as [string, string];
        const path = `/queues/${queue}/tasks/${id}${command === 'cancel' ? '/cancel' : ''}`;
        context.out(JSON.stringify(await http(context, path, command === 'cancel' ? 'POST' : 'GET'), null, 2));
        return 0;
      }
      case 'heartbeats':
        needPositionals(rest, 0, 0, 'heartbeats');
        context.out(JSON.stringify(await http(context, '/heartbeats'), null, 2));
        return 0;
      case 'services':
        needPositionals(rest, 0, 0, 'services');
        context.out(JSON.stringify(await http(context, '/services'), null, 2));
        return 0;
      default:
        throw new CliError(`unknown command ${JSON.stringify(command)} (see brainstem --help)`);
    }
  } catch (err) {
    // CliError, BrokerError (the gateway's refusal or the client's), anything else: one line, status 1.
    context.err(`brainstem: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
