import { encodeBinaryFrame } from '../bus/binary-frame.js';
import { HELD_RECEIPT_ACTIONS } from './defaults.js';
import type { SocketLike } from './socket.js';
import { BrokerError } from './types.js';

export type Receipt = Record<string, unknown>;
export type FrameId = number;

interface Outgoing {
  action: string;
  /** A binary frame (v3 stream chunks) goes out as its bytes. */
  text: string | Uint8Array;
  id?: FrameId;
  settle?: { resolve(receipt: Receipt): void; reject(err: Error): void };
  /** In flight when the connection dropped: send again (subscribe/unsubscribe are idempotent). */
  idempotent: boolean;
  timer?: ReturnType<typeof setTimeout>;
}


export interface OutboxSettings {
  maxBufferedFrames: number;
  receiptTimeoutMs: number;
  maxFrameBytes: number;
}

function noop(): void {}

/** A promise whose rejection is not "unhandled" when the caller ignores it (seed code never awaited). */
export function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(noop);
  return promise;
}

export function rejected<T>(err: Error): Promise<T> {
  return quiet(Promise.reject(err));
}

/**
 * What the client sends: frames are checked (size, serializable) before
 * anything goes out, wait in a bounded buffer while there is no open
 * socket, and those sent with an id wait for their receipt (or TIMEOUT).
 */
export class Outbox {
  private readonly buffer: Outgoing[] = [];
  private readonly inflight = new Map<FrameId, Outgoing>();
  private nextFrameId = 1;

  /** `socket()`: the open socket, or null while there is none; `closed()`: the client is closed for good. */
  constructor(
    private readonly settings: OutboxSettings,
    private readonly socket: () => SocketLike | null,
    private readonly closed: () => boolean,
  ) {}

  get bufferedFrames(): number {
    return this.buffer.length;
  }

  /** A fresh id for a frame (pulls use them too). */
  frameId(): FrameId {
    return this.nextFrameId++;
  }

  /**
   * Sends a frame with an id; resolves with its receipt, rejects with the
   * gateway's error, or with TIMEOUT when no receipt came within the receipt
   * timeout of the call (a frame still buffered then is never sent).
   */
  call(frame: Record<string, unknown> & { action: string }, idempotent = false): Promise<Receipt> {
    const id = this.frameId();
    const text = this.serialize({ ...frame, id });
    if (text instanceof BrokerError) return rejected(text);
    return quiet(new Promise<Receipt>((resolve, reject) => {
      this.enqueue({ action: frame.action, text, id, settle: { resolve, reject }, idempotent });
    }));
  }

  /** As `call`, for a binary frame: `header` (its action and fields) as JSON, then `body` (bus protocol v3). */
  callBinary(header: Record<string, unknown> & { action: string }, body: Uint8Array): Promise<Receipt> {
    if (this.closed()) return rejected(new BrokerError('CLOSED', 'the client is closed'));
    const id = this.frameId();
    const bytes = encodeBinaryFrame({ ...header, id }, body);
    if (bytes.length > this.settings.maxFrameBytes) {
      return rejected(new BrokerError('PAYLOAD_TOO_LARGE', `${header.action} frame is larger than ${this.settings.maxFrameBytes} bytes`));
    }
    return quiet(new Promise<Receipt>((resolve, reject) => {
      this.enqueue({ action: header.action, text: bytes, id, settle: { resolve, reject }, idempotent: false });
    }));
  }

  /** Sends a frame without an id (no receipt): resolves once it went out or waits in the buffer. */
  send(frame: Record<string, unknown> & { action: string }): Promise<void> {
    const text = this.serialize(frame);
    if (text instanceof BrokerError) return rejected(text);
    let refused: Error | null = null;
    const out: Outgoing = { action: frame.action, text, idempotent: false, settle: { resolve: noop, reject: (err) => { refused = err; } } };
    this.enqueue(out);
    // From here on nobody waits for it.
    out.settle = undefined;
    return refused ? rejected(refused) : Promise.resolve();
  }

  /** Fire-and-forget, only while open (pings, pulls: both are restored by state, not buffered). */
  sendNow(frame: Record<string, unknown>): void {
    const socket = this.socket();
    if (!socket) return;
    try {
      socket.send(JSON.stringify(frame));
    } catch {
      // The close handler restores what matters on the next connection.
    }
  }

  /** A connection opened: what waited goes out, in order. */
  flush(): void {
    for (const out of this.buffer.splice(0)) this.transmit(out);
  }

  /** The connection closed: idempotent frames in flight wait to be sent again, the others fail with DISCONNECTED. */
  connectionLost(): void {
    const resend: Outgoing[] = [];
    for (const out of this.inflight.values()) {
      if (out.idempotent) {
        resend.push(out);
        continue;
      }
      if (out.timer) clearTimeout(out.timer);
      out.settle?.reject(new BrokerError('DISCONNECTED', `the connection closed before the gateway confirmed ${out.action}`));
    }
    this.inflight.clear();
    this.buffer.unshift(...resend);
  }

  /** Fails what waits in the buffer (reconnect is off), and with `inflight` what awaits a receipt too (close). */
  failAll(err: BrokerError, inflight: boolean): void {
    for (const out of this.buffer.splice(0)) {
      if (out.timer) clearTimeout(out.timer);
      out.settle?.reject(err);
    }
    if (!inflight) return;
    for (const out of this.inflight.values()) {
      if (out.timer) clearTimeout(out.timer);
      out.settle?.reject(err);
    }
    this.inflight.clear();
  }

  /** A receipt or error for `id`: true if a frame of this outbox waited for it. */
  settle(id: FrameId, frame: Receipt, failure: BrokerError | null): boolean {
    const out = this.inflight.get(id);
    if (!out) return false;
    this.inflight.delete(id);
    if (out.timer) clearTimeout(out.timer);
    if (failure) out.settle?.reject(failure);
    else out.settle?.resolve(frame);
    return true;
  }

  /** The frame's text, or why it may not be sent: closed, not serializable, over the gateway's frame limit. */
  private serialize(frame: Record<string, unknown> & { action: string }): string | BrokerError {
    if (this.closed()) return new BrokerError('CLOSED', 'the client is closed');
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

  private enqueue(out: Outgoing): void {
    if (this.socket()) {
      this.transmit(out);
      return;
    }
    if (this.buffer.length >= this.settings.maxBufferedFrames) {
      out.settle?.reject(new BrokerError('BUFFER_FULL',
        `not connected and ${this.settings.maxBufferedFrames} frames already wait: ${out.action} was not sent`));
      return;
    }
    this.buffer.push(out);
    // The receipt timeout runs from the call, buffered or not: a frame still waiting then is dropped, never sent.
    if (out.settle && out.id !== undefined) this.startTimer(out);
  }

  private startTimer(out: Outgoing): void {
    if (out.timer || out.id === undefined) return;
    const id = out.id;
    out.timer = setTimeout(() => {
      const buffered = this.buffer.indexOf(out);
      if (buffered >= 0) this.buffer.splice(buffered, 1);
      else if (this.inflight.get(id) === out) this.inflight.delete(id);
      else return;
      const state = buffered >= 0 ? 'it was never sent' : 'it may or may not have taken effect';
      out.settle?.reject(new BrokerError('TIMEOUT', `no receipt for ${out.action} within ${this.settings.receiptTimeoutMs} ms; ${state}`));
    }, this.settings.receiptTimeoutMs);
  }

  private transmit(out: Outgoing): void {
    const socket = this.socket();
    if (!socket) {
      this.buffer.push(out);
      return;
    }
    if (out.settle && out.id !== undefined) {
      this.inflight.set(out.id, out);
      // A held receipt is not a lost one (contract row heldReceiptActions).
      if (!HELD_RECEIPT_ACTIONS.has(out.action)) this.startTimer(out);
      else if (out.timer) {
        clearTimeout(out.timer);
        out.timer = undefined;
      }
    }
    try {
      socket.send(out.text);
    } catch (err) {
      if (out.id !== undefined) this.inflight.delete(out.id);
      if (out.timer) clearTimeout(out.timer);
      out.settle?.reject(new BrokerError('DISCONNECTED', `could not send ${out.action}: ${(err as Error).message}`));
    }
  }
}

