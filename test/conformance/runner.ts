import { readFileSync } from 'node:fs';
import { TestSocket } from '../helpers/test-socket.js';
import type { ClientDriver, ClientSettings, Note, Outcome } from './driver.js';
import type { FakeBus } from './fake-bus.js';

/**
 * The scenario language (test/conformance/*.json). A scenario is
 * `{title, gateway: "real"|"fake", client?: ClientSettings, steps: Step[]}`;
 * each step has one verb:
 *
 * - `{"call": OP, "args"?, "as"?, "wait"?: false, "expect"?}`: a client call.
 *   `expect` is `{"ok": PATTERN}` or `{"error": CODE}` (the client's
 *   BrokerError with that code); default `{"ok": {}}`. With `"wait": false`
 *   the call is left running; `{"settle": REF, "expect"}` waits for it later
 *   and `{"pending": REF}` checks, on the client's side, that it has not ended.
 * - `{"event": PATTERN, "tag"?}`, `{"task": PATTERN, "worker"?, "as"?}`,
 *   `{"notice": "connected"|"disconnected"}`, `{"clientError": CODE}`: the
 *   next thing of that kind the client did on its own must match (in order:
 *   an unexpected one in between fails the scenario).
 * - `{"server": "expect", "frame": PATTERN, "as"?}`: the next frame the fake
 *   gateway received must match (pings are answered and skipped);
 *   `{"server": "send", "frame"}`; `{"server": "drop"}` ends the connection;
 *   `{"server": "refuse"|"accept"}` refuses or accepts new connections;
 *   `{"server": "connection", "count": N}` waits for the Nth connection;
 *   `{"server": "close", "code", "reason"}` closes it with a close frame;
 *   `{"server": "query", "expect": PATTERN}`: the last connection's URL query;
 *   `{"server": "welcome", "send": false}`: new connections get no welcome;
 *   `{"server": "hang"}`: the current connection answers nothing from now
 *   on (not even pings) and keeps no frames; `{"server": "pinged"}` waits
 *   for an application ping on it.
 * - `{"notice": "disconnected", "code"?}` checks the close code too;
 *   `{"revoked": PATTERN}`: the client's `revoked` event;
 *   `{"progress": PATTERN}`: an `onProgress` callback of an enqueue;
 *   `{"reconnecting": PATTERN}`: the client's `reconnecting` event
 *   (`{attempt}`), each one in order.
 * - `{"sleep": MS}`: lets time pass (a connection that must have lasted).
 * - `{"peer": "call"|"send", "frame", "expect"?}`: a raw second connection
 *   to the real gateway.
 *
 * Values: `"$ref.path"` is a saved value (a call's result, a frame, a task);
 * `"$contract"` is every row of clients/contract.json as `{name: value}`;
 * `{run}` inside a string is unique to the run; `{"$repeat": [TEXT, N]}` is
 * TEXT N times. Patterns match objects partially; `"$any"`, `"$string"`,
 * `"$number"`, `"$absent"`, `"$none"` (null or nothing), `"$traceparent"` (a W3C
 * traceparent) match by kind; `{"$childOf": TRACEPARENT}` matches a child span of it. After the last step the runner
 * pings through the client (unless it was closed) and fails the scenario if
 * anything was left unread: every frame was meant, and so was every event.
 */
export interface Scenario {
  title: string;
  gateway: 'real' | 'fake';
  client?: Omit<ClientSettings, 'name'>;
  steps: Step[];
}

type Step = Record<string, unknown>;
type Frame = Record<string, unknown>;

const STEP_TIMEOUT_MS = 5000;
/** The client contract both clients load (clients/contract.json), as `{name: value}`. */
export const CONTRACT: Record<string, unknown> = Object.fromEntries(
  (JSON.parse(readFileSync(new URL('../../clients/contract.json', import.meta.url), 'utf8')) as { rows: { name: string; value: unknown }[] }).rows
    .map((row) => [row.name, row.value]),
);
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

class Notes {
  private readonly queues = new Map<string, Note[]>();
  private readonly waiters = new Map<string, (note: Note) => void>();

  add(note: Note): void {
    const kind = note.kind === 'connected' || note.kind === 'disconnected' ? 'connection' : note.kind;
    const waiter = this.waiters.get(kind);
    if (waiter) {
      this.waiters.delete(kind);
      waiter(note);
      return;
    }
    let queue = this.queues.get(kind);
    if (!queue) this.queues.set(kind, (queue = []));
    queue.push(note);
  }

  next(kind: string, what: string): Promise<Note> {
    const queued = this.queues.get(kind)?.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(kind);
        reject(new Error(`no ${what} within ${STEP_TIMEOUT_MS} ms`));
      }, STEP_TIMEOUT_MS);
      this.waiters.set(kind, (note) => {
        clearTimeout(timer);
        resolve(note);
      });
    });
  }

  unread(kinds: string[]): Note[] {
    return kinds.flatMap((kind) => this.queues.get(kind) ?? []);
  }
}

/** Differences between `actual` and the partial `expected`, as readable lines. */
export function mismatches(actual: unknown, expected: unknown, path = ''): string[] {
  const at = path || '(root)';
  if (expected === '$none') return actual === null || actual === undefined ? [] : [`${at}: ${JSON.stringify(actual)} is not null`];
  if (expected === '$any') return actual === undefined ? [`${at}: missing`] : [];
  if (expected === '$string') return typeof actual === 'string' ? [] : [`${at}: ${JSON.stringify(actual)} is not a string`];
  if (expected === '$traceparent') return typeof actual === 'string' && TRACEPARENT.test(actual) ? [] : [`${at}: ${JSON.stringify(actual)} is not a traceparent`];
  if (typeof expected === 'object' && expected !== null && '$childOf' in expected) {
    const parent = String((expected as { $childOf: unknown }).$childOf);
    const child = typeof actual === 'string' && TRACEPARENT.test(actual)
      && actual.slice(0, 36) === parent.slice(0, 36) && actual.slice(52) === parent.slice(52) && actual.slice(36, 52) !== parent.slice(36, 52);
    return child ? [] : [`${at}: ${JSON.stringify(actual)} is not a child span of ${parent}`];
  }
  if (expected === '$number') return typeof actual === 'number' ? [] : [`${at}: ${JSON.stringify(actual)} is not a number`];
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual) || actual.length !== expected.length) return [`${at}: ${JSON.stringify(actual)} is not ${JSON.stringify(expected)}`];
    return expected.flatMap((item, i) => mismatches(actual[i], item, `${path}[${i}]`));
  }
  if (typeof expected === 'object' && expected !== null) {
    if (typeof actual !== 'object' || actual === null) return [`${at}: ${JSON.stringify(actual)} is not an object`];
    return Object.entries(expected).flatMap(([key, value]) => {
      const inner = (actual as Record<string, unknown>)[key];
      if (value === '$absent') return inner === undefined ? [] : [`${path}.${key}: present (${JSON.stringify(inner)})`];
      return mismatches(inner, value, `${path}.${key}`);
    });
  }
  return actual === expected ? [] : [`${at}: ${JSON.stringify(actual)} is not ${JSON.stringify(expected)}`];
}

export interface Environment {
  busUrl: string;
  fake?: FakeBus;
  /** Any unique string: names of queues and topics of this run. */
  run: string;
}

export type DriverFactory = (url: string, settings: ClientSettings, note: (note: Note) => void) => Promise<ClientDriver>;

/** Runs one scenario with one client; throws at the first step that does not hold. */
export async function runScenario(scenario: Scenario, env: Environment, makeDriver: DriverFactory): Promise<void> {
  const notes = new Notes();
  const saved = new Map<string, unknown>();
  const calls = new Map<string, { n: number; outcome: Promise<Outcome> }>();
  const driver = await makeDriver(env.busUrl, { name: `conformance-${env.run}`, ...scenario.client }, (note) => notes.add(note));
  let peer: TestSocket | null = null;
  let closed = false;

  const resolve = (value: unknown): unknown => {
    if (typeof value === 'string') {
      if (value === '$contract') return CONTRACT;
      if (value.startsWith('$') && !['$any', '$string', '$number', '$absent', '$none', '$traceparent'].includes(value)) {
        const [name, ...path] = value.slice(1).split('.');
        if (!saved.has(name ?? '')) throw new Error(`nothing saved as ${name}`);
        return path.reduce<unknown>((inner, key) => (inner as Record<string, unknown> | undefined)?.[key], saved.get(name ?? ''));
      }
      return value.replaceAll('{run}', env.run);
    }
    if (Array.isArray(value)) return value.map(resolve);
    if (typeof value === 'object' && value !== null) {
      const repeat = (value as { $repeat?: [string, number] }).$repeat;
      if (repeat) return repeat[0].repeat(repeat[1]);
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolve(v)]));
    }
    return value;
  };

  const check = (actual: unknown, expected: unknown, what: string): void => {
    const problems = mismatches(actual, resolve(expected));
    if (problems.length > 0) throw new Error(`${what}: ${problems.join('; ')} (got ${JSON.stringify(actual).slice(0, 400)})`);
  };

  const checkOutcome = (outcome: Outcome, expect: unknown, what: string): void => {
    const wanted = (expect ?? { ok: {} }) as { ok?: unknown; error?: string };
    if (wanted.error !== undefined) {
      if (!('error' in outcome)) throw new Error(`${what}: expected error ${wanted.error}, got ok ${JSON.stringify(outcome.ok).slice(0, 300)}`);
      if (outcome.error.code !== wanted.error || !outcome.error.brokerError) {
        throw new Error(`${what}: expected BrokerError ${wanted.error}, got ${outcome.error.brokerError ? 'BrokerError' : 'another error'} ${outcome.error.code} (${outcome.error.message})`);
      }
      return;
    }
    if ('error' in outcome) throw new Error(`${what}: failed with ${outcome.error.code}: ${outcome.error.message}`);
    check(outcome.ok, wanted.ok ?? {}, what);
  };

  try {
    for (const [index, step] of scenario.steps.entries()) {
      const what = `step ${index + 1} ${JSON.stringify(step).slice(0, 160)}`;
      if (typeof step.call === 'string') {
        const args = (resolve(step.args ?? {}) as Record<string, unknown>);
        const started = driver.start(step.call, args);
        if (step.call === 'close' || step.call === 'drain') closed = true;
        if (typeof step.as === 'string') calls.set(step.as, started);
        if (step.wait === false) continue;
        const outcome = await withTimeout(started.outcome, what);
        checkOutcome(outcome, step.expect, what);
        if (typeof step.as === 'string' && 'ok' in outcome) saved.set(step.as, outcome.ok);
      } else if (typeof step.settle === 'string') {
        const started = calls.get(step.settle);
        if (!started) throw new Error(`${what}: no call ${step.settle}`);
        const outcome = await withTimeout(started.outcome, what);
        checkOutcome(outcome, step.expect, what);
        if ('ok' in outcome) saved.set(step.settle, outcome.ok);
      } else if (typeof step.pending === 'string') {
        const started = calls.get(step.pending);
        if (!started) throw new Error(`${what}: no call ${step.pending}`);
        if (await driver.isSettled(started.n)) {
          const outcome = await started.outcome;
          throw new Error(`${what}: the call has already ended: ${JSON.stringify(outcome).slice(0, 300)}`);
        }
      } else if ('event' in step) {
        const note = await notes.next('event', `event ${JSON.stringify(step.event)}`);
        if (note.kind !== 'event') throw new Error('unreachable');
        check(note.event, step.event, what);
        if (step.tag !== undefined) check(note.tag, step.tag, `${what} (handler)`);
      } else if ('task' in step) {
        const note = await notes.next('task', `task ${JSON.stringify(step.task)}`);
        if (note.kind !== 'task') throw new Error('unreachable');
        check(note.task, step.task, what);
        if (step.worker !== undefined) check(note.worker, step.worker, `${what} (worker)`);
        if (typeof step.as === 'string') saved.set(step.as, note.task);
      } else if (typeof step.notice === 'string') {
        const note = await notes.next('connection', step.notice);
        check(note.kind, step.notice, what);
        if (step.code !== undefined) check(note.kind === 'disconnected' ? note.code : undefined, step.code, what);
      } else if ('revoked' in step || 'progress' in step || 'reconnecting' in step) {
        const kind = 'revoked' in step ? 'revoked' : 'progress' in step ? 'progress' : 'reconnecting';
        const note = await notes.next(kind, `${kind} ${JSON.stringify(step[kind])}`);
        check(note, step[kind], what);
      } else if (typeof step.clientError === 'string') {
        const note = await notes.next('error', `error ${step.clientError}`);
        if (note.kind !== 'error') throw new Error('unreachable');
        check(note.code, step.clientError, what);
      } else if (typeof step.sleep === 'number') {
        await new Promise((resolve) => setTimeout(resolve, step.sleep as number));
      } else if (typeof step.server === 'string') {
        await serverStep(env.fake, step, resolve, check, saved, what);
      } else if (typeof step.peer === 'string') {
        peer ??= await TestSocket.open(`${env.busUrl}?name=peer-${env.run}`);
        const frame = resolve(step.frame) as Frame;
        if (step.peer === 'send') peer.send(frame);
        else {
          const answer = await peer.call(frame);
          check(answer, step.expect ?? { ok: true }, what);
          if (typeof step.as === 'string') saved.set(step.as, answer);
        }
      } else {
        throw new Error(`${what}: unknown step`);
      }
    }
    if (!closed) {
      // The barrier: the gateway answered a ping sent after everything else.
      checkOutcome(await withTimeout(driver.start('ping', {}).outcome, 'final ping'), { ok: { pong: '$number' } }, 'final ping');
    }
    const leftover = notes.unread(['event', 'task', 'error', 'revoked', 'progress']);
    if (leftover.length > 0) throw new Error(`the client did what no step expected: ${JSON.stringify(leftover).slice(0, 500)}`);
    const unread = env.fake?.unread() ?? [];
    if (unread.length > 0) throw new Error(`the client sent frames no step expected: ${JSON.stringify(unread).slice(0, 500)}`);
  } finally {
    peer?.close();
    await driver.stop();
  }
}

async function serverStep(
  fake: FakeBus | undefined,
  step: Step,
  resolve: (value: unknown) => unknown,
  check: (actual: unknown, expected: unknown, what: string) => void,
  saved: Map<string, unknown>,
  what: string,
): Promise<void> {
  if (!fake) throw new Error(`${what}: this scenario runs against the real gateway`);
  switch (step.server) {
    case 'expect': {
      const frame = await fake.next(STEP_TIMEOUT_MS).catch((err: Error) => {
        throw new Error(`${what}: ${err.message}`);
      });
      check(frame, step.frame, what);
      if (typeof step.as === 'string') saved.set(step.as, frame);
      return;
    }
    case 'send':
      fake.send(resolve(step.frame) as Frame);
      return;
    case 'drop':
      fake.drop();
      return;
    case 'refuse':
      fake.setAccepting(false);
      return;
    case 'accept':
      fake.setAccepting(true);
      return;
    case 'connection':
      await fake.connection(Number(step.count), STEP_TIMEOUT_MS);
      return;
    case 'close':
      fake.closeConnection(Number(step.code), String(step.reason ?? ''));
      return;
    case 'query':
      check(fake.queries.at(-1), step.expect, what);
      return;
    case 'welcome':
      fake.setWelcoming(step.send !== false);
      return;
    case 'hang':
      fake.hang();
      return;
    case 'pinged':
      await fake.pinged(STEP_TIMEOUT_MS).catch((err: Error) => {
        throw new Error(`${what}: ${err.message}`);
      });
      return;
    default:
      throw new Error(`${what}: unknown server step`);
  }
}

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: the call did not end within ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
