import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';

/**
 * Bench clients speak the seed's protocol, the subset all three servers
 * understand: `subscribe` and `publish` frames without `id`, so that no
 * server sends receipts the others do not.
 */
export function subscribeFrame(topic: string): string {
  return `{"action":"subscribe","topic":${JSON.stringify(topic)}}`;
}

/**
 * A JSON payload of exactly `payloadBytes` carrying the send time (`t`, ms
 * of performance.now()) and a sequence number. Built by concatenation: the
 * client should spend its time on the wire.
 */
export function payloadBuilder(payloadBytes: number): (seq: number, t: number) => string {
  return (seq, t) => {
    const stamp = `{"seq":${seq},"t":${t.toFixed(3)},"pad":"`;
    const padLength = Math.max(0, payloadBytes - stamp.length - 2);
    return `${stamp}${'x'.repeat(padLength)}"}`;
  };
}

/** A seed-protocol publish frame around payloadBuilder's payload (the soak's WebSocket clients). */
export function publishFrameBuilder(type: string, payloadBytes: number): (seq: number, t: number) => string {
  const head = `{"action":"publish","message":{"type":${JSON.stringify(type)},"payload":`;
  const payload = payloadBuilder(payloadBytes);
  return (seq, t) => `${head}${payload(seq, t)}}}`;
}

const T_FIELD = '"t":';

/** The send time carried by a delivered frame, without parsing all of it. */
export function sentAt(frame: string): number {
  const start = frame.indexOf(T_FIELD);
  if (start < 0) return Number.NaN;
  const end = frame.indexOf(',', start);
  return Number(frame.slice(start + T_FIELD.length, end));
}

export function now(): number {
  return performance.now();
}

/**
 * Opens one client. A brainstem gateway greets with `welcome` first: it is
 * consumed here so that counting starts from the first delivery.
 */
export async function openClient(url: string, greets: boolean): Promise<WebSocket> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  ws.on('error', () => {});
  const welcomed = greets ? once(ws, 'message') : null;
  await once(ws, 'open');
  if (welcomed) await welcomed;
  return ws;
}

export async function closeClients(clients: WebSocket[]): Promise<void> {
  await Promise.all(clients.map(async (ws) => {
    if (ws.readyState === WebSocket.CLOSED) return;
    const closed = once(ws, 'close');
    ws.terminate();
    await closed;
  }));
}

/** Waits until `condition` holds, checking every `stepMs`; false on timeout. */
export async function waitFor(condition: () => boolean, timeoutMs: number, stepMs = 5): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await sleep(stepMs);
  }
  return true;
}

export { sleep };

/**
 * Makes sure every subscriber's subscriptions are in place, the same way
 * for every server (the seed broker sends no receipts): publish probes on
 * `topic` until each subscriber has received one, then wait for quiet.
 * `received(i)` is subscriber i's count of messages so far.
 */
export async function probeUntilSubscribed(
  publisher: { publish(topic: string, payload: string): void },
  topic: string,
  subscribers: number,
  received: (i: number) => number,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let everyone = false;
  while (!everyone) {
    if (Date.now() > deadline) throw new Error('subscribers did not receive a probe in time');
    publisher.publish(topic, '{"probe":true}');
    everyone = await waitFor(() => {
      for (let i = 0; i < subscribers; i++) if (received(i) === 0) return false;
      return true;
    }, 200);
  }
  await waitForQuiet(subscribers, received);
}

/** Waits until no subscriber has received anything for `quietMs`. */
export async function waitForQuiet(subscribers: number, received: (i: number) => number, quietMs = 150): Promise<void> {
  const total = () => {
    let sum = 0;
    for (let i = 0; i < subscribers; i++) sum += received(i);
    return sum;
  };
  let last = total();
  for (;;) {
    await sleep(quietMs);
    const current = total();
    if (current === last) return;
    last = current;
  }
}
