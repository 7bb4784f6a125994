/**
 * Load for the durability tests: a producer that counts receipts and a
 * worker that acks everything, over raw WebSockets.
 */
import { once } from 'node:events';
import WebSocket from 'ws';

type Frame = Record<string, unknown>;
type Teardown = { teardown(fn: () => unknown): void };

export const RECEIPTED = 2000;
/** Enqueues still in flight when the lights go out: they may or may not be stored. */
export const IN_FLIGHT = 50;
export const QUEUE = 'durable.work';

export async function connect(url: string, t: Teardown): Promise<WebSocket> {
  const ws = new WebSocket(url);
  ws.on('error', () => {});
  await once(ws, 'open');
  t.teardown(() => ws.terminate());
  return ws;
}

export function nextFrame(ws: WebSocket, predicate: (frame: Frame) => boolean, timeoutMs = 20_000): Promise<Frame> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.off('message', onMessage);
      reject(new Error(`no matching frame within ${timeoutMs} ms`));
    }, timeoutMs);
    function onMessage(data: WebSocket.RawData) {
      const frame = JSON.parse(String(data)) as Frame;
      if (!predicate(frame)) return;
      clearTimeout(timer);
      ws.off('message', onMessage);
      resolve(frame);
    }
    ws.on('message', onMessage);
  });
}

/**
 * Sends `RECEIPTED + IN_FLIGHT` enqueues at once and calls `onEnough` as
 * soon as RECEIPTED of them have their receipt; resolves with every
 * receipted taskId (the ones that came after `onEnough` included).
 */
export function enqueueAll(ws: WebSocket, onEnough: () => void): { receipted: Set<string>; enough: Promise<void> } {
  const receipted = new Set<string>();
  const enough = new Promise<void>((resolve) => {
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      if (frame.ok !== true || typeof frame.taskId !== 'string') return;
      receipted.add(frame.taskId);
      if (receipted.size === RECEIPTED) {
        onEnough();
        resolve();
      }
    });
  });
  // In batches, so that the worker is busy while tasks pour in.
  let sent = 0;
  const sendBatch = () => {
    for (let end = Math.min(sent + 100, RECEIPTED + IN_FLIGHT); sent < end; sent++) {
      ws.send(JSON.stringify({ action: 'enqueue', queue: QUEUE, task: { n: sent }, id: sent }));
    }
    if (sent < RECEIPTED + IN_FLIGHT && ws.readyState === ws.OPEN) setTimeout(sendBatch, 10);
  };
  sendBatch();
  return { receipted, enough };
}

/** A worker with `credits` pulls in flight that acks every task it gets and pulls again. */
export function work(ws: WebSocket, credits: number): { delivered: string[]; acked: Set<string>; errors: Frame[] } {
  const delivered: string[] = [];
  const acked = new Set<string>();
  const errors: Frame[] = [];
  ws.on('message', (data) => {
    const frame = JSON.parse(String(data)) as Frame;
    if (frame.task) {
      const id = (frame.task as Frame).id as string;
      delivered.push(id);
      // Some work, so that tasks are leased when the crash comes.
      setTimeout(() => {
        if (ws.readyState !== ws.OPEN) return;
        ws.send(JSON.stringify({ action: 'ack', taskId: id, id: `ack:${id}` }));
        ws.send(JSON.stringify({ action: 'pull', queue: QUEUE }));
      }, 2);
    } else if (typeof frame.id === 'string' && frame.id.startsWith('ack:') && frame.ok === true) {
      acked.add(frame.id.slice(4));
    } else if (frame.error) {
      errors.push(frame);
    }
  });
  for (let i = 0; i < credits; i++) ws.send(JSON.stringify({ action: 'pull', queue: QUEUE }));
  return { delivered, acked, errors };
}

export function missing(receipted: Set<string>, ...arrived: Iterable<string>[]): string[] {
  const seen = new Set<string>();
  for (const ids of arrived) for (const id of ids) seen.add(id);
  return [...receipted].filter((id) => !seen.has(id));
}
