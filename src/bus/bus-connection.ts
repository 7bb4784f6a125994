import type { PublishOrder } from './history/publish-order.js';
import type { ReplayedFloors, ReplayHold } from './history/replay-hold.js';
import type { Principal } from './principal.js';
import type { CorkableStream, TickWriteBatch } from '../streams/tick-write-batch.js';
import { sendTextFrame } from '../streams/ws-adapter.js';

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

const TEXT = { binary: false } as const;

/** One client of /bus: its socket, identity, subscriptions and counters. */
export class BusConnection {
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
  /** Publish sequence number of the last event sent, to deliver once per publish. */
  lastPublish = 0;
  framesIn = 0;
  framesOut = 0;
  /** Its publishes while some are being stored (a retained topic or a msgId): kept in order. */
  publishes: PublishOrder | null = null;
  /** Set while a subscription replays history: live events wait in it. */
  hold: ReplayHold | null = null;
  /** Set once a subscription replayed history: late copies of replayed events are dropped. */
  replayed: ReplayedFloors | null = null;
  /** Pings sent since the last pong. */
  missedPongs = 0;
  /** Frames of one tick leave in one write (the router's batch). */
  constructor(readonly socket: BusSocket, info: ConnectionInfo, private readonly batch: TickWriteBatch) {
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

  /** Sends an already serialized text frame. */
  sendRaw(frame: Buffer | string): void {
    this.framesOut++;
    if (this.stream) this.batch.hold(this.stream);
    this.socket.send(frame, TEXT);
  }

  /** Sends a complete WebSocket frame built once for every subscriber (ws-adapter's encodeTextFrame). */
  sendFrame(frame: Buffer): void {
    this.framesOut++;
    if (this.stream) this.batch.hold(this.stream);
    sendTextFrame(this.socket, frame);
  }

  /** Serializes and sends one frame meant for this connection only. */
  send(frame: object): void {
    if (this.closing) return;
    this.sendRaw(JSON.stringify(frame));
  }

  close(code: number, reason: string): void {
    if (this.closing) return;
    this.closing = true;
    this.socket.close(code, reason);
  }
}
