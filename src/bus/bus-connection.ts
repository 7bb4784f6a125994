import type { EventFrame } from './event-frame.js';
import type { PublishOrder } from './history/publish-order.js';
import type { ReplayedFloors, ReplayHold } from './history/replay-hold.js';
import type { Principal } from './principal.js';
import type { CorkableStream, TickWriteBatch } from '../streams/tick-write-batch.js';
import { sendTextFrames } from '../streams/ws-adapter.js';
import { joinFrames, type FrameSink, type TickFrameBatch } from './tick-frame-batch.js';
import { CloseCode } from '../protocol/close-codes.js';

export type { CorkableStream } from '../streams/tick-write-batch.js';

/** The part of a WebSocket the bus needs; `ws` sockets satisfy it. */
export interface BusSocket {
  send(data: Buffer | string, options?: { binary?: boolean }): void;
  readonly bufferedAmount: number;
  close(code?: number, reason?: string): void;
  ping(): void;
  terminate(): void;
}

export interface ConnectionInfo {
  id: string;
  name: string | null;
  remoteAddress: string;
  principal: Principal;
  /** The TCP socket under `socket`: events sent in one tick go out in one write. */
  stream?: CorkableStream | null;
}

/**
 * What became of one event sent to a connection: sent, held behind a
 * replay, not sent (closing, or a late copy of a replayed event), or
 * dropped with the connection, a slow consumer.
 */
export type Delivery = 'sent' | 'held' | 'skipped' | 'dropped';

const TEXT = { binary: false } as const;
const BINARY = { binary: true } as const;

/** One client of /bus: its socket, identity, subscriptions and counters. */
export class BusConnection implements FrameSink {
  readonly id: string;
  readonly name: string | null;
  readonly remoteAddress: string;
  readonly principal: Principal;
  readonly stream: CorkableStream | null;
  readonly connectedAt = Date.now();
  readonly patterns = new Set<string>();
  /** Total length of `patterns`, bounded by the router. */
  patternBytes = 0;
  /** Set once the gateway decided to close it: nothing more is sent. */
  closing = false;
  framesIn = 0;
  framesOut = 0;
  /** Its publishes, kept in order while some are being stored (a retained topic or a msgId); made at its first. */
  publishes: PublishOrder | null = null;
  /** Set while a subscription replays history: live events wait in it. */
  hold: ReplayHold | null = null;
  /** Set once a subscription replayed history: late copies of replayed events are dropped. */
  replayed: ReplayedFloors | null = null;
  /** Pings sent since the last pong. */
  missedPongs = 0;
  /** Event frames of this tick not yet written (TickFrameBatch writes them at its end). */
  private frames: Buffer[] = [];
  private frameBytes = 0;
  /** Frames of one tick leave in one write (the router's batches). */
  constructor(
    readonly socket: BusSocket,
    info: ConnectionInfo,
    private readonly batch: TickWriteBatch,
    private readonly frameBatch: TickFrameBatch,
    private readonly maxBacklogBytes: number,
  ) {
    this.id = info.id;
    this.name = info.name;
    this.remoteAddress = info.remoteAddress;
    this.principal = info.principal;
    this.stream = info.stream ?? null;
  }

  /** The default `source` of what it publishes. */
  get label(): string {
    return this.name ?? this.id;
  }

  /** Bytes sent to it that have not reached its socket yet, those waiting for this tick's end included. */
  get unsentBytes(): number {
    return this.socket.bufferedAmount + this.frameBytes;
  }

  /**
   * One published event: held while a subscription replays history (live
   * events wait behind the replay), skipped when a replay already sent it,
   * else sent within the backlog limit, with the others of this tick at its
   * end (TickFrameBatch): every subscriber's socket gets the same frame.
   */
  deliverEvent(topic: string, frame: EventFrame): Delivery {
    if (this.closing) return 'skipped';
    if (this.hold) {
      this.hold.push(topic, frame.payload);
      return 'held';
    }
    if (this.replayed?.covers(topic, frame.payload)) return 'skipped';
    const wire = frame.wire;
    if (this.unsentBytes + wire.length > this.maxBacklogBytes) return this.dropSlowConsumer();
    this.framesOut++;
    if (this.frames.push(wire) === 1) this.frameBatch.add(this);
    this.frameBytes += wire.length;
    return 'sent';
  }

  /** An event message (a replayed one, say), within the backlog limit as deliverEvent sends. */
  deliverMessage(message: Buffer): Delivery {
    if (this.closing) return 'skipped';
    if (this.unsentBytes + message.length > this.maxBacklogBytes) return this.dropSlowConsumer();
    this.sendRaw(message);
    return 'sent';
  }

  /** Sends an already serialized text frame (after the event frames waiting, in order). */
  sendRaw(frame: Buffer | string): void {
    // Corked first, so that the frames waiting and this one leave in one write.
    if (this.stream) this.batch.hold(this.stream);
    this.writeWaitingFrames();
    this.framesOut++;
    this.socket.send(frame, TEXT);
  }

  takeFrames(): { frames: Buffer[]; bytes: number } | null {
    if (this.frames.length === 0) return null;
    const taken = { frames: this.frames, bytes: this.frameBytes };
    this.frames = [];
    this.frameBytes = 0;
    return taken;
  }

  writeFrames(frames: Buffer[], joined: Buffer): void {
    // Gone meanwhile (its peer left): nobody reads them.
    if (this.closing) return;
    sendTextFrames(this.socket, frames, joined);
  }

  /** Sends one binary frame (v3: a stream's chunk), after the frames waiting. */
  sendBinary(frame: Uint8Array): void {
    if (this.closing) return;
    if (this.stream) this.batch.hold(this.stream);
    this.writeWaitingFrames();
    this.framesOut++;
    this.socket.send(frame as Buffer, BINARY);
  }

  /** Serializes and sends one frame meant for this connection only. */
  send(frame: object): void {
    if (this.closing) return;
    this.sendRaw(JSON.stringify(frame));
  }

  close(code: number, reason: string): void {
    if (this.closing) return;
    this.writeWaitingFrames();
    this.closing = true;
    this.socket.close(code, reason);
  }

  /** Past its backlog limit: closed (1008) so that it never stalls the others or grows the gateway's memory. */
  private dropSlowConsumer(): Delivery {
    this.close(CloseCode.POLICY_VIOLATION, 'slow consumer');
    return 'dropped';
  }

  private writeWaitingFrames(): void {
    const taken = this.takeFrames();
    if (taken) this.writeFrames(taken.frames, joinFrames(taken.frames, taken.bytes));
  }
}
