import type { BusEvent } from '../bus/protocol.js';
import { isValidPattern, isValidQueueName, isValidTopic, patternMatches } from '../bus/topic.js';
import { Emitter } from './emitter.js';
import { dropSocket, OPEN, resolveWebSocket, type SocketConstructor, type SocketLike } from './socket.js';
import { TaskWorker, type WorkerPort } from './task-worker.js';
import { BrokerError, type Task, type TaskHandler } from './types.js';

export type EventHandler = (event: BusEvent) => unknown;

/** Fields of the published message besides `type` and `payload` (the seed's `opts`). */
export interface PublishOptions {
  source?: string;
  timestamp?: string;
  correlationId?: string | number;
  replyTo?: string;
}

export interface EnqueueOptions {
  priority?: number;
  delay?: number;
  attempts?: number;
  backoff?: number | { type: 'exponential' | 'fixed'; delay: number };
  /** The taskId to use instead of one the gateway picks. */
  jobId?: string;
  /** When the task is done the gateway publishes its result there (correlationId = taskId). */
  replyTo?: string;
}

export interface ReconnectOptions {
  /** First delay after a lost connection (default 200 ms); doubles per failed attempt. */
  initialDelayMs?: number;
  /** Longest delay between attempts (default 10 s). */
  maxDelayMs?: number;
}

export interface BrokerClientOptions {
  /** The gateway: `ws://host:port/bus`; `http(s)://host:port` and a missing path are accepted. */
  url?: string;
  /** The service's name (the seed's option): sent as `?name=`, the default `source` of its events. */
  id?: string;
  /** Sent as `?token=` (browsers cannot set headers). */
  token?: string;
  /** `false`: do not reconnect after a lost connection. */
  reconnect?: ReconnectOptions | false;
  /** Frames kept while disconnected; past it, calls reject with BUFFER_FULL (default 1000). */
  maxBufferedFrames?: number;
  /** How long a frame sent with an id waits for its receipt (default 30 s). */
  receiptTimeoutMs?: number;
  /** Default timeout of request() (default 10 s). */
  requestTimeoutMs?: number;
  /** Ping after this much silence; drop the connection after twice as much (default 15 s; 0: off). */
  keepaliveMs?: number;
  /** How long one connection attempt may take (default 10 s). */
  connectTimeoutMs?: number;
  /** Largest frame to send (default 1 MiB, the gateway's default); larger calls reject at once. */
  maxFrameBytes?: number;
  /** The WebSocket implementation; default: `ws` in Node (set by the entry), the native one in browsers. */
  WebSocket?: SocketConstructor;
}

export interface ConnectOptions {
  /** Keep trying (with backoff) when the gateway is not there yet, instead of rejecting. */
  retry?: boolean;
}

export type BrokerClientEvents = {
  connected: { clientId: string | null; reconnected: boolean };
  disconnected: { code: number; reason: string };
  reconnecting: { attempt: number; delayMs: number };
  /** close() or drain() finished: the client is done for good. */
  closed: undefined;
  error: Error;
};

type Receipt = Record<string, unknown>;
type FrameId = number;

interface Outgoing {
  action: string;
  text: string;
  id?: FrameId;
  settle?: { resolve(receipt: Receipt): void; reject(err: Error): void };
  /** In flight when the connection dropped: send again (subscribe/unsubscribe are idempotent). */
  idempotent: boolean;
  timer?: ReturnType<typeof setTimeout>;
}

interface OpenPull {
  id: FrameId;
  queue: string;
  /** null: a seed-style pull(), its task goes to onTaskReceived. */
  owner: TaskWorker | null;
}

interface PendingRequest {
  resolve(event: BusEvent): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

type State = 'idle' | 'connecting' | 'waiting' | 'open' | 'closed';

const DEFAULTS = {
  initialDelayMs: 200,
  maxDelayMs: 10_000,
  maxBufferedFrames: 1000,
  receiptTimeoutMs: 30_000,
  requestTimeoutMs: 10_000,
  keepaliveMs: 15_000,
  connectTimeoutMs: 10_000,
  maxFrameBytes: 1024 * 1024,
};
/** The defaults of every option, as one table (a fresh copy each call). */
export function defaultOptions() {
  return {
    reconnect: { initialDelayMs: DEFAULTS.initialDelayMs, maxDelayMs: DEFAULTS.maxDelayMs },
    maxBufferedFrames: DEFAULTS.maxBufferedFrames,
    receiptTimeoutMs: DEFAULTS.receiptTimeoutMs,
    requestTimeoutMs: DEFAULTS.requestTimeoutMs,
    keepaliveMs: DEFAULTS.keepaliveMs,
    connectTimeoutMs: DEFAULTS.connectTimeoutMs,
    maxFrameBytes: DEFAULTS.maxFrameBytes,
  };
}

/** A connection that lasted this long was healthy: the next reconnect starts from the first delay. */
const STABLE_CONNECTION_MS = 1000;
const CLOSE_GRACE_MS = 1000;
/** A server that sends no welcome frame (not this gateway) counts as connected after this long. */
const WELCOME_WAIT_MS = 1000;

function noop(): void {}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}

/** A unique id; crypto.randomUUID is missing on plain-HTTP pages, so fall back. */
export function uniqueId(): string {
  const crypto = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (typeof crypto?.randomUUID === 'function') return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}-${Math.random().toString(36).slice(2, 12)}`;
}

/** A promise whose rejection is not "unhandled" when the caller ignores it (seed code never awaited). */
function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(noop);
  return promise;
}

function rejected<T>(err: Error): Promise<T> {
  return quiet(Promise.reject(err));
}

function defaultUrl(): string {
  const env = typeof process !== 'undefined' ? process.env?.BRAINSTEM_URL : undefined;
  if (env) return env;
  const location = (globalThis as { location?: { protocol: string; host: string } }).location;
  if (location && /^https?:$/.test(location.protocol)) {
    return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/bus`;
  }
  return 'ws://127.0.0.1:8080/bus';
}

function defaultToken(): string | undefined {
  return typeof process !== 'undefined' ? process.env?.BRAINSTEM_TOKEN || undefined : undefined;
}

/** `http://host:port` → `ws://host:port/bus`: people paste the gateway's address. */
export function toBusUrl(raw: string): URL {
  const url = new URL(raw);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new BrokerError('INVALID_URL', `not a ws:// or http:// URL: ${raw}`);
  if (url.pathname === '' || url.pathname === '/') url.pathname = '/bus';
  return url;
}

/**
 * One connection to the gateway's /bus that survives restarts of either
 * side: it reconnects with backoff and jitter, then restores its
 * subscriptions and its open pulls; what is sent while disconnected waits
 * in a bounded buffer. Runs in Node (`ws`) and in browsers (native
 * WebSocket). The seed client's methods keep working (`onTaskReceived`,
 * `pull`, `ack`, `fail`, constructor `{url, id}`).
 */
export class BrokerClient extends Emitter<BrokerClientEvents> {
  readonly url: string;
  readonly id: string;
  /** The id the gateway gave this connection (from its welcome frame). */
  clientId: string | null = null;

  private readonly connectUrl: string;
  private readonly Socket: SocketConstructor;
  private readonly reconnectOptions: Required<ReconnectOptions> | false;
  private readonly maxBufferedFrames: number;
  private readonly receiptTimeoutMs: number;
  private readonly requestTimeoutMs: number;
  private readonly keepaliveMs: number;
  private readonly connectTimeoutMs: number;
  private readonly maxFrameBytes: number;

  private socket: SocketLike | null = null;
  private state: State = 'idle';
  /** Counts opened connections: a task is leased to the connection it came on. */
  private epoch = 0;
  private everConnected = false;
  private retryFirstConnect = false;
  private attempt = 0;
  private openedAt = 0;
  private lastReceivedAt = 0;
  private lastSocketError = '';
  private nextFrameId = 1;
  private connecting: Promise<void> | null = null;
  private connectWaiter: { resolve(): void; reject(err: Error): void } | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private keepaliveTimer: ReturnType<typeof setInterval> | null = null;
  private welcomeTimer: ReturnType<typeof setTimeout> | null = null;
  /** Opened but not yet announced: whether it is a reconnection. */
  private pendingAnnouncement: boolean | null = null;

  private readonly buffer: Outgoing[] = [];
  private readonly inflight = new Map<FrameId, Outgoing>();
  private readonly subscriptions = new Map<string, Set<EventHandler>>();
  private readonly pulls = new Map<FrameId, OpenPull>();
  /** Pulls of stopped workers still open at the gateway: their tasks are handed back. */
  private readonly orphanPulls = new Set<FrameId>();
  /** Tasks taken through seed-style pulls, by id → the connection they came on. */
  private readonly held = new Map<string, number>();
  private readonly workers = new Set<TaskWorker>();
  private readonly requests = new Map<string, PendingRequest>();
  private inbox: string | null = null;
  private inboxReady: Promise<void> | null = null;
  private taskCallback: TaskHandler | null = null;
  private draining = false;

  constructor(options: BrokerClientOptions = {}) {
    super();
    this.url = options.url ?? defaultUrl();
    this.id = options.id ?? uniqueId();
    const url = toBusUrl(this.url);
    if (options.id !== undefined && !url.searchParams.has('name')) url.searchParams.set('name', options.id);
    const token = options.token ?? defaultToken();
    if (token !== undefined && !url.searchParams.has('token')) url.searchParams.set('token', token);
    this.connectUrl = url.toString();
    this.Socket = resolveWebSocket(options.WebSocket);
    this.reconnectOptions = options.reconnect === false ? false : {
      initialDelayMs: options.reconnect?.initialDelayMs ?? DEFAULTS.initialDelayMs,
      maxDelayMs: options.reconnect?.maxDelayMs ?? DEFAULTS.maxDelayMs,
    };
    this.maxBufferedFrames = options.maxBufferedFrames ?? DEFAULTS.maxBufferedFrames;
    this.receiptTimeoutMs = options.receiptTimeoutMs ?? DEFAULTS.receiptTimeoutMs;
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
    this.keepaliveMs = options.keepaliveMs ?? DEFAULTS.keepaliveMs;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs;
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULTS.maxFrameBytes;
  }

  get connected(): boolean {
    return this.state === 'open';
  }

  /** Frames waiting for a connection. */
  get bufferedFrames(): number {
    return this.buffer.length;
  }

  // ---- connection -------------------------------------------------------

  /**
   * Opens the connection. Rejects if the first attempt fails, unless
   * `{retry: true}`; once connected, the client reconnects by itself.
   */
  connect(options: ConnectOptions = {}): Promise<void> {
    if (this.state === 'closed') return rejected(new BrokerError('CLOSED', 'the client is closed'));
    if (this.state === 'open' && this.pendingAnnouncement === null) return Promise.resolve();
    if (options.retry) this.retryFirstConnect = true;
    if (!this.connecting) {
      this.connecting = quiet(new Promise<void>((resolve, reject) => {
        this.connectWaiter = { resolve, reject };
      }));
    }
    if (this.state === 'idle') this.openSocket();
    return this.connecting;
  }

  /** Closes for good: pending calls reject with CLOSED; no reconnect. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const wasAnnounced = this.state === 'open' && this.pendingAnnouncement === null;
    this.state = 'closed';
    this.clearTimers();
    const err = new BrokerError('CLOSED', 'the client is closed');
    for (const out of this.buffer.splice(0)) out.settle?.reject(err);
    for (const out of this.inflight.values()) {
      if (out.timer) clearTimeout(out.timer);
      out.settle?.reject(err);
    }
    this.inflight.clear();
    for (const request of this.requests.values()) {
      clearTimeout(request.timer);
      request.reject(err);
    }
    this.requests.clear();
    for (const worker of this.workers) worker.halt();
    this.connectWaiter?.reject(err);
    this.connectWaiter = null;
    this.connecting = null;
    const socket = this.socket;
    this.socket = null;
    if (socket) await this.closeGracefully(socket);
    if (wasAnnounced) this.emit('disconnected', { code: 1000, reason: 'client closed' });
    this.emit('closed', undefined);
  }

  /**
   * Stops every worker from pulling, waits for the tasks in hand to be
   * acked or failed, then closes. Tasks that arrive meanwhile are not
   * touched: closing the connection hands them back to the queue at once.
   */
  async drain(): Promise<void> {
    this.draining = true;
    await Promise.all([...this.workers].map((worker) => worker.stop()));
    await this.close();
  }

  private openSocket(): void {
    this.state = 'connecting';
    let socket: SocketLike;
    try {
      socket = new this.Socket(this.connectUrl);
    } catch (err) {
      this.state = 'idle';
      this.failConnect(new BrokerError('CONNECT_FAILED', `cannot connect to ${this.url}: ${(err as Error).message}`));
      return;
    }
    this.socket = socket;
    this.lastSocketError = '';
    this.connectTimer = setTimeout(() => {
      if (this.socket !== socket || this.state !== 'connecting') return;
      this.lastSocketError = `no answer within ${this.connectTimeoutMs} ms`;
      dropSocket(socket, 4000, 'connect timeout');
      this.handleClose(socket, 1006, 'connect timeout');
    }, this.connectTimeoutMs);
    socket.onopen = () => this.handleOpen(socket);
    socket.onmessage = (event) => this.handleMessage(event.data);
    socket.onerror = (event) => {
      const message = (event as { message?: unknown; error?: { message?: unknown } }).message
        ?? (event as { error?: { message?: unknown } }).error?.message;
      if (typeof message === 'string') this.lastSocketError = message;
    };
    socket.onclose = (event) => this.handleClose(socket, event.code, event.reason);
  }

  private handleOpen(socket: SocketLike): void {
    if (socket !== this.socket) return;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    this.state = 'open';
    this.epoch++;
    this.clientId = null;
    const reconnected = this.everConnected;
    this.everConnected = true;
    this.openedAt = Date.now();
    this.lastReceivedAt = this.openedAt;
    this.orphanPulls.clear();
    // Restore first, then what waited: the buffer may publish to topics it subscribed to.
    for (const pattern of this.subscriptions.keys()) this.restoreSubscription(pattern);
    for (const pull of this.pulls.values()) this.sendPull(pull);
    for (const out of this.buffer.splice(0)) this.transmit(out);
    this.startKeepalive();
    // Announced once the welcome names the connection (clientId), which follows the open at once.
    this.welcomeTimer = setTimeout(() => this.announceConnected(reconnected), WELCOME_WAIT_MS);
    this.pendingAnnouncement = reconnected;
  }

  private announceConnected(reconnected: boolean): void {
    if (this.welcomeTimer) clearTimeout(this.welcomeTimer);
    this.welcomeTimer = null;
    this.pendingAnnouncement = null;
    this.emit('connected', { clientId: this.clientId, reconnected });
    this.connectWaiter?.resolve();
    this.connectWaiter = null;
    this.connecting = null;
  }

  private handleClose(socket: SocketLike, code: number, reason: string): void {
    if (socket !== this.socket) return;
    this.socket = null;
    const wasOpen = this.state === 'open';
    const wasAnnounced = wasOpen && this.pendingAnnouncement === null;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    if (this.welcomeTimer) clearTimeout(this.welcomeTimer);
    this.welcomeTimer = null;
    this.pendingAnnouncement = null;
    this.stopKeepalive();
    this.orphanPulls.clear();
    const resend: Outgoing[] = [];
    for (const out of this.inflight.values()) {
      if (out.timer) clearTimeout(out.timer);
      if (out.idempotent) resend.push(out);
      else out.settle?.reject(new BrokerError('DISCONNECTED', `the connection closed before the gateway confirmed ${out.action}`));
    }
    this.inflight.clear();
    this.buffer.unshift(...resend);
    if (this.state === 'closed') return;
    if (wasAnnounced) this.emit('disconnected', { code, reason });

    if (!this.everConnected && !this.retryFirstConnect) {
      this.state = 'idle';
      const why = this.lastSocketError || reason || `closed with code ${code}`;
      this.failConnect(new BrokerError('CONNECT_FAILED', `cannot connect to ${this.url}: ${why}`));
      return;
    }
    if (this.reconnectOptions === false && this.everConnected) {
      this.state = 'idle';
      for (const out of this.buffer.splice(0)) out.settle?.reject(new BrokerError('DISCONNECTED', 'disconnected and reconnect is off'));
      return;
    }
    const lasted = wasOpen ? Date.now() - this.openedAt : 0;
    if (lasted >= STABLE_CONNECTION_MS) this.attempt = 0;
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    const { initialDelayMs, maxDelayMs } = this.reconnectOptions || DEFAULTS;
    const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(this.attempt, 30));
    // "Equal jitter": never below half the ceiling, so restarts are not hammered,
    // and spread over the other half, so many clients do not return at once.
    const delayMs = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    this.attempt++;
    this.state = 'waiting';
    this.emit('reconnecting', { attempt: this.attempt, delayMs });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.state === 'waiting') this.openSocket();
    }, delayMs);
  }

  private failConnect(err: Error): void {
    this.connectWaiter?.reject(err);
    this.connectWaiter = null;
    this.connecting = null;
  }

  private startKeepalive(): void {
    if (this.keepaliveMs <= 0) return;
    const keepaliveMs = this.keepaliveMs;
    this.keepaliveTimer = setInterval(() => {
      const socket = this.socket;
      if (!socket || this.state !== 'open') return;
      const silentMs = Date.now() - this.lastReceivedAt;
      if (silentMs >= 2 * keepaliveMs) {
        this.lastSocketError = 'the gateway stopped answering';
        dropSocket(socket, 4000, 'keepalive timeout');
        this.handleClose(socket, 1006, 'the gateway stopped answering');
      } else if (silentMs >= keepaliveMs) {
        this.sendNow({ action: 'ping' });
      }
    }, Math.max(10, Math.floor(keepaliveMs / 2)));
    (this.keepaliveTimer as { unref?: () => void }).unref?.();
  }

  private stopKeepalive(): void {
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = null;
  }

  private clearTimers(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.connectTimer) clearTimeout(this.connectTimer);
    if (this.welcomeTimer) clearTimeout(this.welcomeTimer);
    this.reconnectTimer = null;
    this.connectTimer = null;
    this.welcomeTimer = null;
    this.stopKeepalive();
  }

  private closeGracefully(socket: SocketLike): Promise<void> {
    return new Promise((resolve) => {
      const grace = setTimeout(() => {
        dropSocket(socket, 1000, 'client closed');
        resolve();
      }, CLOSE_GRACE_MS);
      socket.onclose = () => {
        clearTimeout(grace);
        resolve();
      };
      socket.onmessage = null;
      try {
        socket.close(1000, 'client closed');
      } catch {
        clearTimeout(grace);
        dropSocket(socket, 1000, 'client closed');
        resolve();
      }
    });
  }

  // ---- frames -----------------------------------------------------------

  /** Sends a frame with an id; resolves with its receipt, rejects with the gateway's error. */
  private call(frame: Record<string, unknown> & { action: string }, idempotent = false): Promise<Receipt> {
    if (this.state === 'closed') return rejected(new BrokerError('CLOSED', 'the client is closed'));
    const id = this.nextFrameId++;
    let text: string;
    try {
      text = JSON.stringify({ ...frame, id });
    } catch (err) {
      return rejected(new BrokerError('INVALID_FRAME', `cannot send ${frame.action}: ${(err as Error).message}`));
    }
    if (text.length * 3 > this.maxFrameBytes && new TextEncoder().encode(text).length > this.maxFrameBytes) {
      return rejected(new BrokerError('PAYLOAD_TOO_LARGE', `${frame.action} frame is larger than ${this.maxFrameBytes} bytes`));
    }
    return quiet(new Promise<Receipt>((resolve, reject) => {
      this.enqueueOutgoing({ action: frame.action, text, id, settle: { resolve, reject }, idempotent });
    }));
  }

  private enqueueOutgoing(out: Outgoing): void {
    if (this.state === 'open' && this.socket?.readyState === OPEN) {
      this.transmit(out);
      return;
    }
    if (this.buffer.length >= this.maxBufferedFrames) {
      out.settle?.reject(new BrokerError('BUFFER_FULL',
        `not connected and ${this.maxBufferedFrames} frames already wait: ${out.action} was not sent`));
      return;
    }
    this.buffer.push(out);
  }

  private transmit(out: Outgoing): void {
    const socket = this.socket;
    if (!socket) {
      this.buffer.push(out);
      return;
    }
    if (out.settle && out.id !== undefined) {
      const id = out.id;
      this.inflight.set(id, out);
      out.timer = setTimeout(() => {
        if (this.inflight.get(id) !== out) return;
        this.inflight.delete(id);
        out.settle?.reject(new BrokerError('TIMEOUT', `no receipt for ${out.action} within ${this.receiptTimeoutMs} ms`));
      }, this.receiptTimeoutMs);
    }
    try {
      socket.send(out.text);
    } catch (err) {
      if (out.id !== undefined) this.inflight.delete(out.id);
      if (out.timer) clearTimeout(out.timer);
      out.settle?.reject(new BrokerError('DISCONNECTED', `could not send ${out.action}: ${(err as Error).message}`));
    }
  }

  /** Fire-and-forget, only while open (pings, pulls: both are restored by state, not buffered). */
  private sendNow(frame: Record<string, unknown>): void {
    const socket = this.socket;
    if (!socket || this.state !== 'open' || socket.readyState !== OPEN) return;
    try {
      socket.send(JSON.stringify(frame));
    } catch {
      // The close handler restores what matters on the next connection.
    }
  }

  private handleMessage(data: unknown): void {
    this.lastReceivedAt = Date.now();
    if (typeof data !== 'string') return;
    let frame: unknown;
    try {
      frame = JSON.parse(data);
    } catch {
      this.reportError(new BrokerError('INVALID_JSON', 'the gateway sent a frame that is not JSON'));
      return;
    }
    if (!isObject(frame)) return;
    if ('event' in frame) {
      this.dispatchEvent(frame.event);
      return;
    }
    if ('task' in frame) {
      this.receiveTask(frame.task, frame.id);
      return;
    }
    if (isObject(frame.welcome)) {
      this.clientId = typeof frame.welcome.clientId === 'string' ? frame.welcome.clientId : null;
      if (this.pendingAnnouncement !== null) this.announceConnected(this.pendingAnnouncement);
      return;
    }
    const id = frame.id;
    const failure = 'error' in frame
      ? new BrokerError(typeof frame.code === 'string' ? frame.code : 'ERROR', String(frame.error))
      : null;
    if (typeof id === 'number') {
      const pull = this.pulls.get(id);
      if (pull) {
        if (failure) this.pullRefused(pull, failure);
        return;
      }
      if (this.orphanPulls.has(id)) {
        if (failure) this.orphanPulls.delete(id);
        return;
      }
      const out = this.inflight.get(id);
      if (out) {
        this.inflight.delete(id);
        if (out.timer) clearTimeout(out.timer);
        if (failure) out.settle?.reject(failure);
        else out.settle?.resolve(frame);
        return;
      }
    }
    if (failure) this.reportError(failure);
  }

  private reportError(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else console.error(`[brainstem client ${this.id}] ${error.message}`);
  }

  /** A round trip to the gateway; resolves with its clock (ms). */
  ping(): Promise<number> {
    return quiet(this.call({ action: 'ping' }).then((answer) => Number(answer.pong)));
  }

  // ---- pub/sub ----------------------------------------------------------

  /**
   * Calls `handler` for every event whose type matches `pattern` (`*` one
   * segment, `>` one or more at the end). A handler registered under
   * several matching patterns still sees each event once. Resolves when
   * the gateway confirms.
   */
  subscribe(pattern: string, handler: EventHandler): Promise<void> {
    if (!isValidPattern(pattern)) {
      return rejected(new BrokerError('INVALID_TOPIC', `invalid pattern: ${JSON.stringify(pattern)}`));
    }
    let handlers = this.subscriptions.get(pattern);
    if (handlers) {
      handlers.add(handler);
      return Promise.resolve();
    }
    handlers = new Set([handler]);
    this.subscriptions.set(pattern, handlers);
    return quiet(this.call({ action: 'subscribe', topic: pattern }, true).then(noop, (err: BrokerError) => {
      if (err.code !== 'CLOSED' && this.subscriptions.get(pattern) === handlers) this.subscriptions.delete(pattern);
      throw err;
    }));
  }

  /** Removes `handler` (or every handler) from `pattern`; the last one out unsubscribes at the gateway. */
  unsubscribe(pattern: string, handler?: EventHandler): Promise<void> {
    const handlers = this.subscriptions.get(pattern);
    if (!handlers) return Promise.resolve();
    if (handler) handlers.delete(handler);
    if (handler && handlers.size > 0) return Promise.resolve();
    this.subscriptions.delete(pattern);
    return quiet(this.call({ action: 'unsubscribe', topic: pattern }, true).then(noop));
  }

  private restoreSubscription(pattern: string): void {
    void this.call({ action: 'subscribe', topic: pattern }, true).catch((err: BrokerError) => {
      if (err.code === 'CLOSED' || err.code === 'DISCONNECTED' || err.code === 'TIMEOUT') return;
      this.subscriptions.delete(pattern);
      this.reportError(new BrokerError(err.code, `could not restore the subscription to ${pattern}: ${err.message}`));
    });
  }

  /** Publishes an event; resolves with the gateway's receipt (`delivered`: how many connections got it). */
  publish(type: string, payload?: unknown, options: PublishOptions = {}): Promise<{ delivered: number }> {
    if (!isValidTopic(type)) return rejected(new BrokerError('INVALID_TOPIC', `invalid topic: ${JSON.stringify(type)}`));
    const message = { type, payload: payload === undefined ? null : payload, ...options };
    return quiet(this.call({ action: 'publish', message }).then((receipt) => ({
      delivered: typeof receipt.delivered === 'number' ? receipt.delivered : 0,
    })));
  }

  /**
   * Publishes with `replyTo` (this client's inbox) and a fresh
   * `correlationId`, and resolves with the first reply event. Rejects with
   * TIMEOUT when no reply comes in time.
   */
  request(type: string, payload?: unknown, options: { timeout?: number } = {}): Promise<BusEvent> {
    if (!isValidTopic(type)) return rejected(new BrokerError('INVALID_TOPIC', `invalid topic: ${JSON.stringify(type)}`));
    const timeoutMs = options.timeout ?? this.requestTimeoutMs;
    const correlationId = uniqueId();
    const inbox = this.ensureInbox();
    return quiet(new Promise<BusEvent>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.requests.delete(correlationId);
        reject(new BrokerError('TIMEOUT', `no reply to ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      const fail = (err: Error) => {
        if (!this.requests.delete(correlationId)) return;
        clearTimeout(timer);
        reject(err);
      };
      this.requests.set(correlationId, { resolve, reject, timer });
      inbox.ready
        .then(() => this.publish(type, payload, { replyTo: inbox.topic, correlationId }))
        .catch(fail);
    }));
  }

  /** Answers an event that asked for a reply: publishes to its `replyTo` with its `correlationId`. */
  reply(event: BusEvent, payload?: unknown): Promise<{ delivered: number }> {
    if (!event.replyTo) return rejected(new BrokerError('INVALID_FRAME', `event ${event.type} has no replyTo`));
    const options: PublishOptions = event.correlationId === undefined ? {} : { correlationId: event.correlationId };
    return this.publish(event.replyTo, payload, options);
  }

  /** Subscribes `handler` to `pattern` and publishes what it returns as the reply of each request. */
  respond(pattern: string, handler: (event: BusEvent) => unknown): Promise<void> {
    return this.subscribe(pattern, async (event) => {
      const result = await handler(event);
      if (event.replyTo) await this.reply(event, result);
    });
  }

  private ensureInbox(): { topic: string; ready: Promise<void> } {
    if (!this.inbox) this.inbox = `_inbox.${uniqueId()}`;
    const topic = this.inbox;
    if (!this.inboxReady) {
      this.inboxReady = quiet(this.subscribe(topic, (event) => {
        const key = event.correlationId === undefined ? undefined : String(event.correlationId);
        const request = key === undefined ? undefined : this.requests.get(key);
        if (!request || key === undefined) return;
        this.requests.delete(key);
        clearTimeout(request.timer);
        request.resolve(event);
      }).catch((err: unknown) => {
        this.inboxReady = null;
        throw err;
      }));
    }
    return { topic, ready: this.inboxReady };
  }

  private dispatchEvent(event: unknown): void {
    if (!isObject(event) || typeof event.type !== 'string') return;
    const seen = new Set<EventHandler>();
    for (const [pattern, handlers] of this.subscriptions) {
      if (!patternMatches(pattern, event.type)) continue;
      for (const handler of handlers) {
        if (seen.has(handler)) continue;
        seen.add(handler);
        this.invoke(handler, event as unknown as BusEvent);
      }
    }
  }

  private invoke<T>(handler: (value: T) => unknown, value: T): void {
    try {
      const result = handler(value);
      if (isThenable(result)) result.then(undefined, (err: unknown) => this.reportError(err));
    } catch (err) {
      this.reportError(err);
    }
  }

  // ---- queues -----------------------------------------------------------

  /** Stores a task durably; resolves with its `taskId` once the gateway has stored it. */
  enqueue(queue: string, payload: unknown, options?: EnqueueOptions): Promise<string> {
    if (!isValidQueueName(queue)) return rejected(new BrokerError('INVALID_QUEUE', `invalid queue: ${JSON.stringify(queue)}`));
    const frame: Record<string, unknown> & { action: string } = { action: 'enqueue', queue, task: payload === undefined ? null : payload };
    if (options !== undefined) frame.opts = options;
    return quiet(this.call(frame).then((receipt) => String(receipt.taskId)));
  }

  /**
   * Processes tasks of `queue`: keeps `concurrency` pulls open, runs
   * `handler` on each task, acks with its return value, fails with the
   * message of what it throws, and pulls again. Never holds more than
   * `concurrency` tasks. `stop()` on the result ends it cleanly.
   */
  work(queue: string, handler: TaskHandler, options: { concurrency?: number } = {}): TaskWorker {
    if (!isValidQueueName(queue)) throw new BrokerError('INVALID_QUEUE', `invalid queue: ${JSON.stringify(queue)}`);
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new BrokerError('INVALID_FRAME', `concurrency must be a whole number of at least 1, not ${concurrency}`);
    }
    if (this.state === 'closed') throw new BrokerError('CLOSED', 'the client is closed');
    const worker = new TaskWorker(this.workerPort, queue, handler, concurrency);
    this.workers.add(worker);
    void worker.stopped.then(() => this.workers.delete(worker));
    worker.start();
    return worker;
  }

  /** The seed's callback for tasks that arrive on `pull()`. */
  onTaskReceived(callback: TaskHandler): void {
    this.taskCallback = callback;
  }

  /**
   * Asks for one task of `queue` (the seed's pull): it arrives at the
   * `onTaskReceived` callback when one is there. The pull stays open
   * across reconnects until a task comes.
   */
  pull(queue: string): void {
    if (!isValidQueueName(queue)) {
      this.reportError(new BrokerError('INVALID_QUEUE', `invalid queue: ${JSON.stringify(queue)}`));
      return;
    }
    this.openPull(queue, null);
  }

  /** The task is done. Rejects with LEASE_LOST if it came on a connection that has since closed. */
  ack(taskId: string, result?: unknown): Promise<void> {
    return this.settleHeld('ack', taskId, result === undefined ? {} : { result });
  }

  /** The attempt failed: the gateway retries it with backoff, or dead-letters it. */
  fail(taskId: string, reason = ''): Promise<void> {
    return this.settleHeld('fail', taskId, { reason });
  }

  private settleHeld(action: 'ack' | 'fail', taskId: string, fields: Record<string, unknown>): Promise<void> {
    const epoch = this.held.get(taskId);
    this.held.delete(taskId);
    return this.settleTask(action, taskId, epoch, fields);
  }

  private settleTask(action: 'ack' | 'fail', taskId: string, epoch: number | undefined, fields: Record<string, unknown>): Promise<void> {
    if (epoch !== undefined && (epoch !== this.epoch || this.state !== 'open')) {
      return rejected(new BrokerError('LEASE_LOST',
        `task ${taskId} came on a connection that closed: the gateway gave it back to the queue`));
    }
    return quiet(this.call({ action, taskId, ...fields }).then(noop));
  }

  private openPull(queue: string, owner: TaskWorker | null): void {
    const pull: OpenPull = { id: this.nextFrameId++, queue, owner };
    this.pulls.set(pull.id, pull);
    this.sendPull(pull);
  }

  private sendPull(pull: OpenPull): void {
    this.sendNow({ action: 'pull', queue: pull.queue, id: pull.id });
  }

  private pullRefused(pull: OpenPull, err: BrokerError): void {
    this.pulls.delete(pull.id);
    if (pull.owner) pull.owner.pullRefused(err);
    else this.reportError(new BrokerError(err.code, `pull from ${pull.queue} refused: ${err.message}`));
  }

  private receiveTask(raw: unknown, pullId: unknown): void {
    if (!isObject(raw) || raw.id === undefined || raw.id === null) return;
    const task = { ...raw, id: String(raw.id) } as unknown as Task;
    const epoch = this.epoch;
    if (typeof pullId === 'number' && this.orphanPulls.delete(pullId)) {
      // Draining: closing the connection hands it back without a retry delay.
      if (!this.draining) void this.settleTask('fail', task.id, epoch, { reason: 'worker stopped' });
      return;
    }
    let pull = typeof pullId === 'number' ? this.pulls.get(pullId) : undefined;
    if (!pull) {
      for (const candidate of this.pulls.values()) {
        if (candidate.queue === task.queue) {
          pull = candidate;
          break;
        }
      }
    }
    if (pull) this.pulls.delete(pull.id);
    if (pull?.owner) {
      pull.owner.run(task, epoch);
      return;
    }
    if (this.taskCallback) {
      this.held.set(task.id, epoch);
      this.invoke(this.taskCallback, task);
      return;
    }
    this.reportError(new BrokerError('UNKNOWN_TASK', `task ${task.id} of ${task.queue} arrived with no handler: handed back`));
    void this.settleTask('fail', task.id, epoch, { reason: 'no handler for this task' });
  }

  private readonly workerPort: WorkerPort = {
    pull: (worker) => this.openPull(worker.queue, worker),
    settle: (action, task, epoch, fields) => this.settleTask(action, task.id, epoch, fields),
    release: (worker) => {
      for (const pull of [...this.pulls.values()]) {
        if (pull.owner !== worker) continue;
        this.pulls.delete(pull.id);
        if (this.state === 'open') this.orphanPulls.add(pull.id);
      }
    },
    report: (err) => this.reportError(err),
    schedule: (fn, ms) => {
      const timer = setTimeout(fn, ms);
      (timer as { unref?: () => void }).unref?.();
      return () => clearTimeout(timer);
    },
  };
}
