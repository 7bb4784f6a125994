import { PythonProcess } from '../python/python-process.js';

/** What a call ended with: its value, or the error in language-neutral terms. */
export type Outcome =
  | { ok: unknown }
  | { error: { code: string | null; brokerError: boolean; message: string } };

/** What the client did on its own: an event or a task handed to a handler, a connection change, an error it reported. */
export type Note =
  | { kind: 'event'; tag: string; event: Record<string, unknown> }
  | { kind: 'task'; worker: string | null; task: Record<string, unknown> }
  | { kind: 'connected' }
  | { kind: 'disconnected'; code?: number }
  | { kind: 'revoked'; taskId: string; queue: string; reason: string }
  | { kind: 'progress'; taskId: string; progress: unknown }
  | { kind: 'reconnecting'; attempt: number }
  | { kind: 'error'; code: string | null };

/** Client options a scenario may set, in neutral names (each driver maps them to its language's). */
export interface ClientSettings {
  name: string;
  reconnectInitialDelayMs?: number;
  reconnectMaxDelayMs?: number;
  maxBufferedFrames?: number;
  receiptTimeoutMs?: number;
  keepaliveMs?: number;
  /** `false`: send no `?pid=`; a number: send that one. */
  pid?: number | false;
  /** Send opts.traceparent on every enqueue. */
  traceTasks?: boolean;
}

/**
 * One client, remote-controlled by the scenario runner: `start` begins a
 * call (the runner decides whether to wait for it), `isSettled` asks the
 * client's own side whether a call has ended (so a "still pending" check
 * sees the client's state, not a message in transit).
 */
export interface ClientDriver {
  readonly language: string;
  start(op: string, args: Record<string, unknown>): { n: number; outcome: Promise<Outcome> };
  isSettled(n: number): Promise<boolean>;
  stop(): Promise<void>;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** The Python client, driven through test/python/conformance_driver.py under `interpreter`. */
export class PythonDriver implements ClientDriver {
  readonly language = 'python';
  private counter = 0;

  private constructor(private readonly python: PythonProcess) {}

  static async start(t: Teardown, url: string, settings: ClientSettings, note: (note: Note) => void, interpreter: string): Promise<PythonDriver> {
    const python = PythonProcess.start(t, 'conformance_driver.py', [url, JSON.stringify(settings)], { python: interpreter });
    const driver = new PythonDriver(python);
    // Notes arrive interleaved with answers, in the order the client made them.
    python.divert((l) => 'note' in l, (l) => note(l.note as Note));
    await python.next((l) => l.ready === true);
    return driver;
  }

  start(op: string, args: Record<string, unknown>): { n: number; outcome: Promise<Outcome> } {
    const n = ++this.counter;
    this.python.send({ n, op, args });
    const outcome = this.python.next((l) => l.n === n && ('ok' in l || 'error' in l), 60_000)
      .then((line) => ('error' in line ? { error: line.error } : { ok: line.ok }) as Outcome);
    return { n, outcome };
  }

  async isSettled(n: number): Promise<boolean> {
    const m = ++this.counter;
    this.python.send({ n: m, op: 'settled', args: { call: n } });
    const line = await this.python.next((l) => l.n === m && ('ok' in l || 'error' in l));
    return (line.ok as { settled: boolean }).settled;
  }

  async stop(): Promise<void> {
    this.python.child.stdin.end();
    await Promise.race([this.python.exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
    this.python.signal('SIGKILL');
  }

  get stderr(): string {
    return this.python.stderr;
  }
}
