import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface BeatingProcess {
  child: ChildProcess;
  pid: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The process POSTs `{pid: its own pid, name}` to `url` itself; resolves with the HTTP status (0: no answer). */
  beat(url: string, name: string): Promise<number>;
}

// Reads `[url, name]` lines; answers each with the status of its beat. Stays
// up, silent, between beats (stdin stays open), as a hung service would.
const SCRIPT = `
if (process.env.IGNORE_SIGTERM === '1') process.on('SIGTERM', () => {});
let queue = Promise.resolve();
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const [url, name] = JSON.parse(line);
  queue = queue.then(async () => {
    try {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pid: process.pid, name }) });
      await res.arrayBuffer();
      console.log(res.status);
    } catch {
      console.log(0);
    }
  });
});
console.log('ready');
`;

/**
 * A real process that beats for itself when told to: the pid in its beats
 * is its own and it holds the connection they come on, so the gateway can
 * prove it and may stop it. Killed at teardown if still there.
 */
export async function beatingProcess(t: Teardown, options: { ignoreSigterm?: boolean } = {}): Promise<BeatingProcess> {
  const child = spawn(process.execPath, ['-e', SCRIPT], {
    env: { ...process.env, IGNORE_SIGTERM: options.ignoreSigterm ? '1' : '0' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const waiting: ((line: string) => void)[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream })
    .on('line', (line) => waiting.shift()?.(line))
    // Gone: whatever was asked of it gets no answer.
    .on('close', () => { for (const resolve of waiting.splice(0)) resolve('0'); });
  const nextLine = () => new Promise<string>((resolve) => waiting.push(resolve));
  // Up once the script runs: its SIGTERM handler, if any, is in place.
  await nextLine();
  return {
    child,
    pid: child.pid as number,
    exited,
    beat: (url, name) => {
      const answer = nextLine();
      child.stdin?.write(`${JSON.stringify([url, name])}\n`);
      return answer.then(Number);
    },
  };
}
