import { decodeBinaryFrame } from '../bus/binary-frame.js';
import { CLOSE_GRACE_MS, STABLE_CONNECTION_MS, WELCOME_WAIT_MS, type ClientDefaults } from './defaults.js';
import { Outbox, quiet, rejected, type FrameId, type Receipt } from './outbox.js';
import { dropSocket, OPEN, type SocketConstructor, type SocketLike } from './socket.js';
import { BrokerError } from './types.js';

export { quiet, rejected, type FrameId, type Receipt };

export type BrokerClientEvents = {
  connected: { clientId: string | null; reconnected: boolean };
  /** `code` 4001 (`heartbeat lapsed`): the gateway closed it; the client reconnects as after any drop. */
  disconnected: { code: number; reason: string };
  /** The gateway took back a task this client held: its `signal` aborted, its ack/fail now reject with LEASE_LOST. */
  revoked: { taskId: string; queue: string; reason: string };
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
  /** `{"revoke":{taskId, queue, reason}}`: a held task was taken back. */
  revoke(revoke: unknown): void;
  /** `{"chunk":{…}}` of a followed stream (v3), with the bytes of a binary one. */
  chunk(chunk: unknown, bytes?: Uint8Array): void;
  /** Names the client in console messages. */
  readonly name: string;
}

export interface TransportSettings extends Omit<ClientDefaults, 'reconnect' | 'traceTasks'> {
  url: string;
  connectUrl: string;
  Socket: SocketConstructor;
  reconnect: ClientDefaults['reconnect'] | false;
}

type State = 'idle' | 'connecting' | 'waiting' | 'open' | 'closed';

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The connection layer: one WebSocket to /bus that reconnects with backoff
 * and jitter and keeps itself alive; what it sends goes through the Outbox
 * (bounded buffer while disconnected, receipts). It knows nothing of topics
 * or queues: the layers above restore their state through `hooks.restore`.
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
  private connecting: Promise<void> | null = null;
  private connectWaiter: { resolve(): void; reject(err: Error): void } | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private keepaliveTimer: ReturnType<typeof setInterval> | null = null;
  private welcomeTimer: ReturnType<typeof setTimeout> | null = null;
  /** Opened but not yet announced: whether it is a reconnection. */
  private pendingAnnouncement: boolean | null = null;
  private readonly outbox: Outbox;

  constructor(private readonly settings: TransportSettings, private readonly hooks: TransportHooks) {
    this.outbox = new Outbox(settings, () => this.openSocketOrNull(), () => this.state === 'closed');
  }

  private openSocketOrNull(): SocketLike | null {
    return this.state === 'open' && this.socket?.readyState === OPEN ? this.socket : null;
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  get isClosed(): boolean {
    return this.state === 'closed';
  }

  get bufferedFrames(): number {
    return this.outbox.bufferedFrames;
  }

  /** A fresh id for a frame (pulls use them too). */
  frameId(): FrameId {
    return this.outbox.frameId();
  }

  call(frame: Record<string, unknown> & { action: string }, idempotent = false): Promise<Receipt> {
    return this.outbox.call(frame, idempotent);
  }

  callBinary(header: Record<string, unknown> & { action: string }, body: Uint8Array): Promise<Receipt> {
    return this.outbox.callBinary(header, body);
  }

  send(frame: Record<string, unknown> & { action: string }): Promise<void> {
    return this.outbox.send(frame);
  }

  sendNow(frame: Record<string, unknown>): void {
    this.outbox.sendNow(frame);
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
    this.outbox.failAll(err, true);
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
    socket.binaryType = 'arraybuffer';
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
    this.outbox.flush();
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
    this.outbox.connectionLost();
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
      this.outbox.failAll(new BrokerError('DISCONNECTED', 'disconnected and reconnect is off'), false);
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

  /**
   * An application ping, not a WebSocket one: browsers cannot send protocol
   * pings, so it is the one keepalive every build of this client and the
   * Python client share; it goes only after silence (any frame counts as
   * life); and its pong comes from the gateway's frame handling, the path
   * receipts and events take, rather than from the WebSocket library alone.
   */
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

  private handleMessage(data: unknown): void {
    this.lastReceivedAt = Date.now();
    if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
      this.handleBinary(data);
      return;
    }
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
    if ('revoke' in frame) {
      this.hooks.revoke(frame.revoke);
      return;
    }
    if ('chunk' in frame) {
      this.hooks.chunk(frame.chunk);
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
      if (this.hooks.answer(id, failure) || this.outbox.settle(id, frame, failure)) return;
    }
    if (failure) this.reportError(failure);
  }

  /** A binary frame: a chunk of a followed stream, the only thing the gateway sends so. */
  private handleBinary(data: ArrayBuffer | ArrayBufferView): void {
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const decoded = decodeBinaryFrame(bytes);
    if (typeof decoded === 'string') {
      this.reportError(new BrokerError('INVALID_FRAME', `the gateway sent a malformed binary frame: ${decoded}`));
      return;
    }
    if ('chunk' in decoded.header) this.hooks.chunk(decoded.header.chunk, decoded.body);
  }

  reportError(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    if (this.hooks.hasErrorListener()) this.hooks.emit('error', error);
    else console.error(`[brainstem client ${this.hooks.name}] ${error.message}`);
  }
}
