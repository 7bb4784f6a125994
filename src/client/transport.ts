import { CLOSE_GRACE_MS, STABLE_CONNECTION_MS, WELCOME_WAIT_MS, type ClientDefaults } from './defaults.js';
import { dropSocket, OPEN, type SocketConstructor, type SocketLike } from './socket.js';
import { BrokerError } from './types.js';

export type Receipt = Record<string, unknown>;
export type FrameId = number;

export type BrokerClientEvents = {
  connected: { clientId: string | null; reconnected: boolean };
  disconnected: { code: number; reason: string };
  reconnecting: { attempt: number; delayMs: number };
  /** close() or drain() finished: the client is done for good. */
  closed: undefined;
  error: Error;
};

/** What the layers above give the transport: they own subscriptions, pulls and leases. */
export interface TransportHooks {
  /** A connection opened: send what restores this client's state, before the buffer goes out. */
  restore(): void;
  event(event: unknown): void;
  task(task: unknown, pullId: unknown): void;
  /** A receipt or error whose id the transport did not send (a pull's): true if the layer took it. */
  answer(id: FrameId, failure: BrokerError | null): boolean;
  /** The connection closed: what was bound to it is gone. */
  lost(): void;
  /** close(): fail or stop whatever waits. */
  closing(err: BrokerError): void;
  emit<K extends keyof BrokerClientEvents>(name: K, value: BrokerClientEvents[K]): void;
  hasErrorListener(): boolean;
  /** Names the client in console messages. */
  readonly name: string;
}

export interface TransportSettings extends Omit<ClientDefaults, 'reconnect'> {
  url: string;
  connectUrl: string;
  Socket: SocketConstructor;
  reconnect: ClientDefaults['reconnect'] | false;
}

interface Outgoing {
  action: string;
  text: string;
  id?: FrameId;
  settle?: { resolve(receipt: Receipt): void; reject(err: Error): void };
  /** In flight when the connection dropped: send again (subscribe/unsubscribe are idempotent). */
  idempotent: boolean;
  timer?: ReturnType<typeof setTimeout>;
}

type State = 'idle' | 'connecting' | 'waiting' | 'open' | 'closed';

function noop(): void {}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A promise whose rejection is not "unhandled" when the caller ignores it (seed code never awaited). */
export function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(noop);
  return promise;
}

export function rejected<T>(err: Error): Promise<T> {
  return quiet(Promise.reject(err));
}

/**
 * The connection layer: one WebSocket to /bus that reconnects with backoff
 * and jitter, a bounded buffer for frames sent while disconnected, and the
 * receipts of frames sent with an id. It knows nothing of topics or
 * queues: the layers above restore their state through `hooks.restore`.
 */
export class Transport {
  clientId: string | null = null;
  /** Counts opened connections: a task is leased to the connection it came on. */
  epoch = 0;

  private socket: SocketLike | null = null;
  private state: State = 'idle';
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

  constructor(private readonly settings: TransportSettings, private readonly hooks: TransportHooks) {}

  get isOpen(): boolean {
    return this.state === 'open';
  }

  get isClosed(): boolean {
    return this.state === 'closed';
  }

  get bufferedFrames(): number {
    return this.buffer.length;
  }

  /** A fresh id for a frame (pulls use them too). */
  frameId(): FrameId {
    return this.nextFrameId++;
  }

  connect(options: { retry?: boolean } = {}): Promise<void> {
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
    this.hooks.closing(err);
    this.connectWaiter?.reject(err);
    this.connectWaiter = null;
    this.connecting = null;
    const socket = this.socket;
    this.socket = null;
    if (socket) await this.closeGracefully(socket);
    if (wasAnnounced) this.hooks.emit('disconnected', { code: 1000, reason: 'client closed' });
    this.hooks.emit('closed', undefined);
  }

  private openSocket(): void {
    this.state = 'connecting';
    let socket: SocketLike;
    try {
      socket = new this.settings.Socket(this.settings.connectUrl);
    } catch (err) {
      this.state = 'idle';
      this.failConnect(new BrokerError('CONNECT_FAILED', `cannot connect to ${this.settings.url}: ${(err as Error).message}`));
      return;
    }
    this.socket = socket;
    this.lastSocketError = '';
    this.connectTimer = setTimeout(() => {
      if (this.socket !== socket || this.state !== 'connecting') return;
      this.lastSocketError = `no answer within ${this.settings.connectTimeoutMs} ms`;
      dropSocket(socket, 4000, 'connect timeout');
      this.handleClose(socket, 1006, 'connect timeout');
    }, this.settings.connectTimeoutMs);
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
    this.hooks.lost();
    // Restore first, then what waited: the buffer may publish to topics it subscribed to.
    this.hooks.restore();
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
    this.hooks.emit('connected', { clientId: this.clientId, reconnected });
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
    this.hooks.lost();
    const resend: Outgoing[] = [];
    for (const out of this.inflight.values()) {
      if (out.timer) clearTimeout(out.timer);
      if (out.idempotent) resend.push(out);
      else out.settle?.reject(new BrokerError('DISCONNECTED', `the connection closed before the gateway confirmed ${out.action}`));
    }
    this.inflight.clear();
    this.buffer.unshift(...resend);
    if (this.state === 'closed') return;
    if (wasAnnounced) this.hooks.emit('disconnected', { code, reason });

    if (!this.everConnected && !this.retryFirstConnect) {
      this.state = 'idle';
      const why = this.lastSocketError || reason || `closed with code ${code}`;
      this.failConnect(new BrokerError('CONNECT_FAILED', `cannot connect to ${this.settings.url}: ${why}`));
      return;
    }
    if (this.settings.reconnect === false && this.everConnected) {
      this.state = 'idle';
      for (const out of this.buffer.splice(0)) out.settle?.reject(new BrokerError('DISCONNECTED', 'disconnected and reconnect is off'));
      return;
    }
    const lasted = wasOpen ? Date.now() - this.openedAt : 0;
    if (lasted >= STABLE_CONNECTION_MS) this.attempt = 0;
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    const { initialDelayMs, maxDelayMs } = this.settings.reconnect || { initialDelayMs: 0, maxDelayMs: 0 };
    const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(this.attempt, 30));
    // "Equal jitter": never below half the ceiling, so restarts are not hammered,
    // and spread over the other half, so many clients do not return at once.
    const delayMs = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    this.attempt++;
    this.state = 'waiting';
    this.hooks.emit('reconnecting', { attempt: this.attempt, delayMs });
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
    const keepaliveMs = this.settings.keepaliveMs;
    if (keepaliveMs <= 0) return;
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
  call(frame: Record<string, unknown> & { action: string }, idempotent = false): Promise<Receipt> {
    const id = this.frameId();
    const text = this.serialize({ ...frame, id });
    if (text instanceof BrokerError) return rejected(text);
    return quiet(new Promise<Receipt>((resolve, reject) => {
      this.enqueueOutgoing({ action: frame.action, text, id, settle: { resolve, reject }, idempotent });
    }));
  }

  /** Sends a frame without an id (no receipt): resolves once it went out or waits in the buffer. */
  send(frame: Record<string, unknown> & { action: string }): Promise<void> {
    const text = this.serialize(frame);
    if (text instanceof BrokerError) return rejected(text);
    let refused: Error | null = null;
    const out: Outgoing = { action: frame.action, text, idempotent: false, settle: { resolve: noop, reject: (err) => { refused = err; } } };
    this.enqueueOutgoing(out);
    // From here on nobody waits for it.
    out.settle = undefined;
    return refused ? rejected(refused) : Promise.resolve();
  }

  /** The frame's text, or why it may not be sent: closed, not serializable, over the gateway's frame limit. */
  private serialize(frame: Record<string, unknown> & { action: string }): string | BrokerError {
    if (this.state === 'closed') return new BrokerError('CLOSED', 'the client is closed');
    let text: string;
    try {
      text = JSON.stringify(frame);
    } catch (err) {
      return new BrokerError('INVALID_FRAME', `cannot send ${frame.action}: ${(err as Error).message}`);
    }
    const limit = this.settings.maxFrameBytes;
    if (text.length * 3 > limit && new TextEncoder().encode(text).length > limit) {
      return new BrokerError('PAYLOAD_TOO_LARGE', `${frame.action} frame is larger than ${limit} bytes`);
    }
    return text;
  }

  private enqueueOutgoing(out: Outgoing): void {
    if (this.state === 'open' && this.socket?.readyState === OPEN) {
      this.transmit(out);
      return;
    }
    if (this.buffer.length >= this.settings.maxBufferedFrames) {
      out.settle?.reject(new BrokerError('BUFFER_FULL',
        `not connected and ${this.settings.maxBufferedFrames} frames already wait: ${out.action} was not sent`));
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
        out.settle?.reject(new BrokerError('TIMEOUT', `no receipt for ${out.action} within ${this.settings.receiptTimeoutMs} ms`));
      }, this.settings.receiptTimeoutMs);
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
  sendNow(frame: Record<string, unknown>): void {
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
      this.hooks.event(frame.event);
      return;
    }
    if ('task' in frame) {
      this.hooks.task(frame.task, frame.id);
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
      if (this.hooks.answer(id, failure)) return;
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

  reportError(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    if (this.hooks.hasErrorListener()) this.hooks.emit('error', error);
    else console.error(`[brainstem client ${this.hooks.name}] ${error.message}`);
  }
}
