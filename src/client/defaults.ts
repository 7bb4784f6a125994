/**
 * Every default of the client, in one table. The Python client has the
 * same table (clients/python/src/brainstem/defaults.py, in seconds), and
 * the conformance scenario 20-defaults checks that both say the same.
 */
const DEFAULTS = Object.freeze({
  reconnect: Object.freeze({
    /** First delay after a lost connection; doubles per failed attempt. */
    initialDelayMs: 200,
    /** Longest delay between attempts. */
    maxDelayMs: 10_000,
  }),
  /** Frames kept while disconnected; past it, calls fail with BUFFER_FULL. */
  maxBufferedFrames: 1000,
  /** How long a frame sent with an id waits for its receipt. */
  receiptTimeoutMs: 30_000,
  /** Default timeout of request(). */
  requestTimeoutMs: 10_000,
  /** Ping after this much silence; drop the connection after twice as much. */
  keepaliveMs: 15_000,
  /** How long one connection attempt may take. */
  connectTimeoutMs: 10_000,
  /** Largest frame the client sends: the gateway's own default (BUS_MAX_FRAME_BYTES) closes the connection above it. */
  maxFrameBytes: 1024 * 1024,
  /** Send `opts.traceparent` on every enqueue: off until the gateway accepts that option. */
  traceTasks: true,
});

export type ClientDefaults = {
  reconnect: { initialDelayMs: number; maxDelayMs: number };
  maxBufferedFrames: number;
  receiptTimeoutMs: number;
  requestTimeoutMs: number;
  keepaliveMs: number;
  connectTimeoutMs: number;
  maxFrameBytes: number;
  traceTasks: boolean;
};

/** The defaults of every option, as one table (a fresh copy each call, as nats.js's defaultOptions()). */
export function defaultOptions(): ClientDefaults {
  return { ...DEFAULTS, reconnect: { ...DEFAULTS.reconnect } };
}

/** A connection that lasted this long was healthy: the next reconnect starts from the first delay. */
export const STABLE_CONNECTION_MS = 1000;
/** How long close() waits for the gateway's close frame. */
export const CLOSE_GRACE_MS = 1000;
/** A server that sends no welcome frame (not this gateway) counts as connected after this long. */
export const WELCOME_WAIT_MS = 1000;
/** A refused pull (store down, rate limited) is asked again after this long. */
export const PULL_RETRY_MS = 1000;

let processPid: number | null = null;

/** The Node entry sets the process id sent as `?pid=` (browsers have none to send). */
export function setProcessPid(pid: number): void {
  processPid = pid;
}

export function defaultPid(): number | null {
  return processPid;
}
