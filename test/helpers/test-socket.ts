import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { MatchQueue } from './match-queue.js';

type Frame = Record<string, unknown>;
type Predicate = (frame: Frame) => boolean;

let barriers = 0;

/**
 * A raw protocol client for tests: every frame received is kept in order,
 * and `next` waits for the first one (optionally matching) not yet taken.
 */
export class TestSocket {
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly frames = new MatchQueue<Frame>(
    (timeoutMs, unmatched) => `no matching frame within ${timeoutMs} ms; unmatched: ${JSON.stringify(unmatched).slice(0, 500)}`,
  );

  private constructor(readonly ws: WebSocket) {
    // A binary frame (bus protocol v3 stream chunks) is kept as `{binary: Buffer}`.
    ws.on('message', (data, isBinary) => this.frames.push(isBinary ? { binary: data as Buffer } : JSON.parse(data.toString()) as Frame));
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    ws.on('error', () => {});
  }

  /** Opens a connection and consumes its welcome frame. */
  static async open(url: string, options?: WebSocket.ClientOptions): Promise<TestSocket> {
    const socket = new TestSocket(new WebSocket(url, options));
    await once(socket.ws, 'open');
    await socket.next((f) => 'welcome' in f);
    return socket;
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Sends a frame with an id and waits for its receipt or error. */
  async call(frame: Frame, id: string | number = Math.random().toString(36).slice(2)): Promise<Frame> {
    this.send({ ...frame, id });
    return this.next((f) => f.id === id && ('ok' in f || 'error' in f));
  }

  /** Frames received that nothing has taken yet, in order. */
  get received(): Frame[] {
    return this.frames.items;
  }

  next(predicate: Predicate = () => true, timeoutMs = 5000): Promise<Frame> {
    return this.frames.next(predicate, timeoutMs);
  }

  /**
   * True if no frame matching `predicate` arrived before the answer to a
   * ping sent now: the gateway answers frames of one connection in order,
   * so whatever it sent this socket for the frames it processed before
   * (this socket's and, once their receipts came, other sockets') is here by
   * then. Not a wait: a slow machine cannot make it pass.
   */
  async nothing(predicate: Predicate = () => true): Promise<boolean> {
    const id = `barrier-${++barriers}`;
    this.send({ action: 'ping', id });
    const pong = await this.next((f) => f.id === id && 'pong' in f);
    void pong;
    return !this.received.some(predicate);
  }

  event(type?: string, timeoutMs?: number): Promise<Frame> {
    return this.next((f) => 'event' in f && (type === undefined || (f.event as Frame).type === type), timeoutMs);
  }

  close(): void {
    this.ws.terminate();
  }
}

/** Waits until `condition` holds, checking every 10 ms; rejects after `timeoutMs`, naming `what`. */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await sleep(10);
  }
}
