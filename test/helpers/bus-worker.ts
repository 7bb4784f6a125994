import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { MatchQueue } from './match-queue.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

type Line = Record<string, unknown>;

// A worker as a separate process, with nothing but `ws`: it opens /bus with
// ?pid= its own pid and beats for itself, so the gateway can prove both.
// Each frame and close it sees is a JSON line on stdout; it does what each
// JSON line on stdin says (send a frame, beat, reconnect).
const SCRIPT = `
const WebSocket = require(process.env.WS_MODULE);
const { busUrl, httpUrl, name, named } = JSON.parse(process.env.WORKER);
const out = (line) => process.stdout.write(JSON.stringify(line) + '\\n');
let ws;
function connect() {
  ws = new WebSocket(busUrl + '?pid=' + process.pid + (named ? '&name=' + encodeURIComponent(name) : ''));
  ws.on('message', (data) => out({ frame: JSON.parse(data.toString()) }));
  ws.on('close', (code, reason) => out({ close: code, reason: reason.toString() }));
  ws.on('error', () => {});
}
require('node:readline').createInterface({ input: process.stdin }).on('line', async (text) => {
  const command = JSON.parse(text);
  if (command.connect) connect();
  if (command.send) ws.send(JSON.stringify(command.send));
  if (command.beat) {
    try {
      const res = await fetch(httpUrl + '/heartbeat', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pid: process.pid, name }) });
      await res.arrayBuffer();
      out({ beat: res.status });
    } catch {
      out({ beat: 0 });
    }
  }
});
connect();
`;

export interface BusWorker {
  child: ChildProcess;
  pid: number;
  /** The clientId of its first connection. */
  clientId: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The first line not yet taken that matches; rejects with what came instead after `timeoutMs`. */
  next(predicate: (line: Line) => boolean, timeoutMs?: number): Promise<Line>;
  /** The first frame not yet taken that matches. */
  frame(predicate: (frame: Line) => boolean, timeoutMs?: number): Promise<Line>;
  send(frame: object): void;
  /** Posts a beat from the worker's own process; resolves with the HTTP status. */
  beat(): Promise<number>;
  reconnect(): void;
}

/** `name` is what it beats as; its bus connection gives it too unless `named` is false. */
export async function busWorker(t: Teardown, gateway: { busUrl: string; httpUrl: string }, name: string, named = true): Promise<BusWorker> {
  const child = spawn(process.execPath, ['-e', SCRIPT], {
    env: {
      ...process.env,
      WS_MODULE: createRequire(import.meta.url).resolve('ws'),
      WORKER: JSON.stringify({ busUrl: gateway.busUrl, httpUrl: gateway.httpUrl, name, named }),
    },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines = new MatchQueue<Line>((timeoutMs, unmatched) =>
    `worker ${name}: no matching line within ${timeoutMs} ms; unmatched: ${JSON.stringify(unmatched).slice(0, 500)}`);
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (text) => lines.push(JSON.parse(text) as Line));
  const next = (predicate: (line: Line) => boolean, timeoutMs = 5000): Promise<Line> => lines.next(predicate, timeoutMs);
  const command = (line: object) => child.stdin?.write(`${JSON.stringify(line)}\n`);
  const worker: Omit<BusWorker, 'clientId'> = {
    child,
    pid: child.pid as number,
    exited,
    next,
    frame: async (predicate, timeoutMs) => (await next((line) => 'frame' in line && predicate(line.frame as Line), timeoutMs)).frame as Line,
    send: (frame) => command({ send: frame }),
    beat: async () => {
      command({ beat: true });
      return (await next((line) => 'beat' in line)).beat as number;
    },
    reconnect: () => command({ connect: true }),
  };
  const welcome = await worker.frame((f) => 'welcome' in f);
  return { ...worker, clientId: (welcome.welcome as Line).clientId as string };
}
