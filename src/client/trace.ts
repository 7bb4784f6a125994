/**
 * W3C trace context without the handler's help: what a handler publishes
 * or enqueues continues the trace of the event or task it handles (same
 * trace id, a new span id, flags kept); anything else starts a new trace.
 * The handled traceparent travels in an async-context store, which only
 * Node has (AsyncLocalStorage, set by the Node entry): in browsers every
 * publish starts its own trace unless it is given `traceparent`.
 */

/** The slice of AsyncLocalStorage used here (browsers import no Node module). */
export interface TraceStorage {
  getStore(): string | undefined;
  run<R>(store: string, fn: () => R): R;
}

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

let storage: TraceStorage | null = null;

export function setTraceStorage(store: TraceStorage): void {
  storage = store;
}

// Random bytes drawn in batches, and a byte→hex table: a publish pays well under a microsecond for its ids.
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const pool = new Uint8Array(4096);
let poolUsed = pool.length;

function randomHex(bytes: number): string {
  if (poolUsed + bytes > pool.length) {
    globalThis.crypto.getRandomValues(pool);
    poolUsed = 0;
  }
  let hex = '';
  for (let i = poolUsed; i < poolUsed + bytes; i++) hex += HEX[pool[i] as number];
  poolUsed += bytes;
  return hex;
}

/** The traceparent of a new trace (sampled). */
export function newTraceparent(): string {
  return `00-${randomHex(16)}-${randomHex(8)}-01`;
}

/** A child span of `parent`: same version, trace id and flags, a new span id. */
export function childOf(parent: string): string {
  return `${parent.slice(0, 36)}${randomHex(8)}${parent.slice(52)}`;
}

/** What an outgoing publish or enqueue carries: the explicit one, else a child of the handled one, else a new trace. */
export function outgoingTraceparent(explicit?: string): string {
  if (explicit !== undefined) return explicit;
  const handled = storage?.getStore();
  return handled === undefined ? newTraceparent() : childOf(handled);
}

/** Runs a handler of something that carried `traceparent`, so what it sends continues that trace. */
export function runInTrace<R>(traceparent: unknown, fn: () => R): R {
  if (!storage || typeof traceparent !== 'string' || !TRACEPARENT.test(traceparent)) return fn();
  return storage.run(traceparent, fn);
}
