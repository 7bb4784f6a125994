import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { MatchQueue } from '../helpers/match-queue.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));

/** Debian's interpreter, where python3-websockets (10.4) is installed (not a pyenv shim). */
export const SYSTEM_PYTHON = '/usr/bin/python3';
/** The client as `pip install` gets it, with the current websockets (scripts/python-venv.sh). */
export const VENV_PYTHON = `${repo}var/venv/bin/python`;
/** Debian's interpreter and websockets with pytest and hypothesis added (scripts/python-venv.sh). */
export const DEBIAN_VENV_PYTHON = `${repo}var/venv-debian/bin/python`;

let interpreterOfThisFile = process.env.BRAINSTEM_TEST_PYTHON ?? SYSTEM_PYTHON;

/** The interpreter Python processes run under when none is given: Debian's, unless a test file chose another. */
export function currentPython(): string {
  return interpreterOfThisFile;
}

/** Makes the rest of this test file run its Python processes under `interpreter`. */
export function runPythonUnder(interpreter: string): void {
  interpreterOfThisFile = interpreter;
}

/**
 * Builds the venvs if they are missing or stale (cached: a second run only
 * checks), and returns what they hold: one line per interpreter with its
 * Python, websockets, pytest and hypothesis versions.
 */
export async function pythonVenvs(): Promise<string> {
  const { stdout } = await promisify(execFile)('bash', [`${repo}scripts/python-venv.sh`], { maxBuffer: 1 << 20 });
  return stdout.trim();
}

export const packageSource = fileURLToPath(new URL('../../clients/python/src', import.meta.url));
export const seedRoot = fileURLToPath(new URL('../fixtures/seed', import.meta.url));
export const scriptsDir = fileURLToPath(new URL('.', import.meta.url));

type Line = Record<string, unknown>;
type Predicate = (line: Line) => boolean;

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface PythonOptions {
  /** Folders put on PYTHONPATH (default: the package's source). */
  path?: string[];
  /** The interpreter (default: `currentPython()`). */
  python?: string;
  env?: Record<string, string>;
  cwd?: string;
}

/**
 * A Python script run under `currentPython()` that prints one JSON object per
 * line: every line is kept in order and `next` waits for the first one
 * (optionally matching) not yet taken. Killed at teardown if still running.
 */
export class PythonProcess {
  readonly all: Line[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly queue = new MatchQueue<Line>((timeoutMs, unmatched) =>
    `no matching line within ${timeoutMs} ms; unmatched: ${JSON.stringify(unmatched).slice(0, 600)}; stderr: ${this.stderr.slice(-1500)}`);
  private partial = '';
  private counter = 0;
  private diverted: { predicate: Predicate; handle: (l: Line) => void } | null = null;

  private constructor(readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      this.partial += chunk;
      let newline: number;
      while ((newline = this.partial.indexOf('\n')) >= 0) {
        const text = this.partial.slice(0, newline).trim();
        this.partial = this.partial.slice(newline + 1);
        if (text) this.accept(text);
      }
    });
    child.stderr.on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    child.stdin.on('error', () => {});
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => resolve({ code, signal }));
    });
  }

  static start(t: Teardown, script: string, args: string[] = [], options: PythonOptions = {}): PythonProcess {
    const child = spawn(options.python ?? interpreterOfThisFile, ['-u', script, ...args], {
      cwd: options.cwd ?? scriptsDir,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/tmp',
        PYTHONPATH: (options.path ?? [packageSource]).join(':'),
        // Keep the source tree free of __pycache__ folders.
        PYTHONDONTWRITEBYTECODE: '1',
        PYTHONUNBUFFERED: '1',
        // Set BRAINSTEM_DEBUG=1 to see the clients' debug log on failures.
        ...(process.env.BRAINSTEM_DEBUG ? { BRAINSTEM_DEBUG: process.env.BRAINSTEM_DEBUG } : {}),
        ...options.env,
      },
    });
    const python = new PythonProcess(child);
    t.teardown(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await python.exited;
      }
    });
    return python;
  }

  private accept(text: string): void {
    let line: Line;
    try {
      line = JSON.parse(text) as Line;
    } catch {
      line = { text };
    }
    this.all.push(line);
    if (this.diverted?.predicate(line)) {
      this.diverted.handle(line);
      return;
    }
    this.queue.push(line);
  }

  /** Lines that nothing has taken yet, in order. */
  get lines(): Line[] {
    return this.queue.items;
  }

  next(predicate: Predicate = () => true, timeoutMs = 10_000): Promise<Line> {
    return this.queue.next(predicate, timeoutMs);
  }

  /** Hands every line matching to `handle` as it arrives, instead of keeping it for `next`. */
  divert(predicate: Predicate, handle: (line: Line) => void): void {
    this.diverted = { predicate, handle };
  }

  /** Lines matching, taken out of the unmatched list. */
  take(predicate: Predicate): Line[] {
    const taken = this.lines.filter(predicate);
    for (const line of taken) this.lines.splice(this.lines.indexOf(line), 1);
    return taken;
  }

  send(command: Line): void {
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
  }

  /**
   * For `driver.py`: sends a command and waits for its answer; rejects with
   * the Python error (its `code` attached) when the command raised.
   */
  async call(command: Line, timeoutMs = 10_000): Promise<Line> {
    const n = ++this.counter;
    this.send({ ...command, n });
    const answer = await this.next((l) => l.n === n, timeoutMs);
    if (answer.error !== undefined) {
      throw Object.assign(new Error(String(answer.error)), { code: answer.code, kind: answer.kind });
    }
    return answer;
  }

  signal(name: NodeJS.Signals): void {
    this.child.kill(name);
  }
}

/** Starts `driver.py`: a BrokerClient of the package driven by JSON commands on stdin. */
export async function startDriver(t: Teardown, busUrl: string, name: string, extra: Record<string, string> = {}): Promise<PythonProcess> {
  const python = PythonProcess.start(t, 'driver.py', [busUrl, name], { env: extra });
  await python.next((l) => l.ready === true);
  return python;
}
