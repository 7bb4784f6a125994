import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { isRunning } from '../helpers/process.js';
import type { Step, TaskRef } from './hostile-values.js';

type Frame = Record<string, unknown>;

/** Close codes the gateway may end a hostile connection with: invalid UTF-8, policy (rate), too big. */
const EXPECTED_CLOSES = new Set([1007, 1008, 1009]);
const BARRIER_TIMEOUT_MS = 15_000;

/** What a run found wrong; empty when the gateway held. */
export type Findings = string[];

/** One fuzzing connection: frames received, pulls the gateway accepted, tasks it delivered. */
class FuzzConnection {
  readonly frames: Frame[] = [];
  /** Frames already looked at by `collect`. */
  read = 0;
  /** Every queue name this connection sent a pull for, exactly as sent. */
  readonly pulled = new Set<string>();
  readonly taskIds: string[] = [];
  closed: { code: number } | null = null;
  private waiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      this.frames.push(JSON.parse(data.toString()) as Frame);
      for (const wake of this.waiters.splice(0)) wake();
    });
    ws.on('close', (code) => {
      this.closed = { code };
      for (const wake of this.waiters.splice(0)) wake();
    });
    ws.on('error', () => {});
  }

  static async open(url: string): Promise<FuzzConnection> {
    const connection = new FuzzConnection(new WebSocket(url));
    await once(connection.ws, 'open');
    await connection.until((f) => 'welcome' in f, 'welcome');
    return connection;
  }

  /** Resolves with the first frame matching, rejects on close or after the barrier timeout. */
  until(match: (frame: Frame) => boolean, what: string): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${BARRIER_TIMEOUT_MS} ms`)), BARRIER_TIMEOUT_MS);
      const check = () => {
        const found = this.frames.find(match);
        if (found) {
          clearTimeout(timer);
          resolve(found);
        } else if (this.closed) {
          clearTimeout(timer);
          reject(new Error(`closed (${this.closed.code}) before ${what}`));
        } else {
          this.waiters.push(check);
        }
      };
      check();
    });
  }

  send(data: string | Uint8Array, binary = false): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(data, { binary });
  }

  close(): void {
    this.ws.terminate();
  }
}

function resolveRefs(frame: Frame, seen: string[]): Frame {
  const taskId = frame.taskId as TaskRef | unknown;
  if (typeof taskId === 'object' && taskId !== null && 'ref' in taskId) {
    const { ref } = taskId as TaskRef;
    return { ...frame, taskId: seen.length === 0 ? `unseen-${ref}` : seen[ref % seen.length] };
  }
  return frame;
}

export interface FuzzTarget {
  busUrl: string;
  httpUrl: string;
  pid: number;
}

/** Resident memory of a process, in bytes (Linux /proc); NaN once it is gone. */
export function rssOf(pid: number): number {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return Number(kb) * 1024;
  } catch {
    return Number.NaN;
  }
}


/**
 * Sends one run of steps over `connections` connections, then checks what
 * a user would notice: the process is the same and serves, every
 * connection answers a ping, no task reached a connection on a queue it
 * did not pull or other than the one it was enqueued on.
 */
export async function fuzzRun(target: FuzzTarget, connections: number, steps: Step[]): Promise<Findings> {
  const findings: Findings = [];
  const conns = await Promise.all(Array.from({ length: connections }, () => FuzzConnection.open(target.busUrl)));
  let next = 0;
  let sentCount = 0;
  try {
    for (const step of steps) {
      let conn = conns[step.conn % conns.length] as FuzzConnection;
      if (conn.closed) {
        if (!EXPECTED_CLOSES.has(conn.closed.code)) findings.push(`connection closed with ${conn.closed.code}`);
        conn = await FuzzConnection.open(target.busUrl);
        conns[step.conn % conns.length] = conn;
      }
      if (step.kind === 'raw') {
        conn.send(step.text);
        notePull(conn, step.text);
      }
      else if (step.kind === 'binary') conn.send(step.bytes, true);
      else {
        const frame = resolveRefs(step.frame, conn.taskIds);
        if (step.withId) frame.id = `fz${++next}`;
        if (frame.action === 'pull' && typeof frame.queue === 'string') conn.pulled.add(frame.queue);
        // The oracle of "delivered on its own queue": the payload names the queue it was enqueued on.
        if (frame.action === 'enqueue' && frame.task !== undefined) frame.task = { fzQueue: frame.queue, value: frame.task };
        let text: string;
        try {
          text = JSON.stringify(frame);
        } catch {
          continue;
        }
        conn.send(text);
      }
      // Let deliveries reach us while we go: task ids feed the next acks.
      if (++sentCount % 16 === 0) await new Promise((resolve) => setImmediate(resolve));
      collect(conn, findings);
    }
    // A barrier per connection: everything the gateway sent for the frames before it is here.
    await Promise.all(conns.map(async (conn, index) => {
      if (conn.closed) {
        if (!EXPECTED_CLOSES.has(conn.closed.code)) findings.push(`connection ${index} closed with ${conn.closed.code}`);
        return;
      }
      const id = `barrier-${index}-${++next}`;
      conn.send(JSON.stringify({ action: 'ping', id }));
      try {
        await conn.until((f) => f.id === id && 'pong' in f, `pong on connection ${index}`);
      } catch (err) {
        findings.push((err as Error).message);
      }
    }));
    for (const conn of conns) collect(conn, findings);
    for (const conn of conns) checkDeliveries(conn, findings);
    if (!isRunning(target.pid)) findings.push(`gateway process ${target.pid} is gone`);
  } finally {
    for (const conn of conns) conn.close();
  }
  return findings;
}

/** A raw frame that is a pull the gateway can read: its queue counts as pulled. */
function notePull(conn: FuzzConnection, text: string): void {
  try {
    const frame = JSON.parse(text) as Frame | null;
    if (frame?.action === 'pull' && typeof frame.queue === 'string') conn.pulled.add(frame.queue);
  } catch {
    // not JSON: no pull
  }
}

/** Reads what arrived: task ids for the next acks, and any INTERNAL answer (a bug the gateway contained). */
function collect(conn: FuzzConnection, findings: Findings): void {
  for (; conn.read < conn.frames.length; conn.read++) {
    const frame = conn.frames[conn.read] as Frame;
    if (frame.code === 'INTERNAL') findings.push(`INTERNAL answered: ${String(frame.error)}`);
    const task = frame.task as Frame | undefined;
    if (task && typeof task.id === 'string') conn.taskIds.push(task.id);
  }
}

/**
 * Every task delivered came on a queue this connection pulled, and is the
 * queue it was enqueued on: each enqueue's payload carries its queue.
 */
function checkDeliveries(conn: FuzzConnection, findings: Findings): void {
  for (const frame of conn.frames) {
    const task = frame.task as Frame | undefined;
    if (!task) continue;
    const queue = task.queue as string;
    if (!conn.pulled.has(queue)) findings.push(`task ${String(task.id)} delivered on ${JSON.stringify(queue)}, which this connection never pulled`);
    const tag = (task.payload as { fzQueue?: unknown } | null)?.fzQueue;
    if (tag !== queue) findings.push(`task ${String(task.id)} enqueued on ${JSON.stringify(tag)} was delivered on ${JSON.stringify(queue)}`);
  }
}
