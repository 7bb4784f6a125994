/**
 * Everything the gateway reads or writes inside a `ws` WebSocket that is
 * not ws's public API, in one place. Pinned by
 * test/ws-adapter-contract.test.ts to the installed ws version: when ws
 * changes, that test says what to re-check here.
 *
 * The internals used (ws 8):
 * - `_socket`: the TCP socket under the WebSocket;
 * - `_sender._state` (0 = nothing being compressed or read from a Blob),
 *   `_sender._queue` (sends waiting behind such work) and
 *   `_sender._firstFragment` (false in the middle of a fragmented message);
 * - `_extensions`: the negotiated extensions, by name.
 * And the frame layout of RFC 6455 for an unmasked, unfragmented text frame.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { CorkableStream } from './tick-write-batch.js';

interface SenderInternals {
  _state: number;
  _queue: unknown[];
  _firstFragment: boolean;
}

interface WebSocketInternals {
  readyState: number;
  _socket?: (Socket & { _httpMessage?: ServerResponse | null }) | null;
  _sender?: SenderInternals | null;
  _extensions?: Record<string, unknown>;
  send(data: Buffer, options: { binary: boolean }): void;
}

const OPEN = 1;
const SENDER_IDLE = 0;
const TEXT = { binary: false } as const;

type WebSocketLike = object & { removeAllListeners(event: 'error'): unknown };

function internals(socket: object): WebSocketInternals {
  return socket as WebSocketInternals;
}

/** The TCP socket under a WebSocket, which the bus corks to batch a tick's frames into one write. */
export function tcpSocketOf(socket: object): CorkableStream | null {
  const stream = internals(socket)._socket as Partial<CorkableStream> | null | undefined;
  const corkable = typeof stream?.cork === 'function' && typeof stream.uncork === 'function' && typeof stream.writableCorked === 'number';
  return corkable ? (stream as CorkableStream) : null;
}

/**
 * Lets go of what the HTTP upgrade leaves attached to a connection that may
 * live for days: @fastify/websocket's `error` listener (a closure over the
 * Fastify request and reply) and the HTTP response still assigned to the
 * TCP socket (it holds the request, its headers and its logger).
 * test/fastify-websocket-contract.test.ts pins the @fastify/websocket part.
 */
export function releaseUpgrade(socket: WebSocketLike): void {
  socket.removeAllListeners('error');
  const tcp = internals(socket)._socket;
  const response = tcp?._httpMessage;
  if (tcp && response && typeof response.detachSocket === 'function') response.detachSocket(tcp);
}

/** Header length of an unmasked frame carrying `length` bytes. */
function headerLength(length: number): number {
  return length < 126 ? 2 : length < 65536 ? 4 : 10;
}

function writeHeader(frame: Buffer, length: number): void {
  frame[0] = 0x81; // FIN, text
  if (length < 126) {
    frame[1] = length;
  } else if (length < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    frame.writeUInt32BE(length >>> 0, 6);
  }
}

/**
 * A complete server-to-client WebSocket text frame (header and payload)
 * for `text`, built once and written as is to every subscriber.
 */
export function encodeTextFrame(text: string): Buffer {
  const length = Buffer.byteLength(text);
  const offset = headerLength(length);
  const frame = Buffer.allocUnsafe(offset + length);
  writeHeader(frame, length);
  frame.write(text, offset, length, 'utf8');
  return frame;
}

/** The same, around a payload that is already bytes (an event from another instance). */
export function encodeTextFrameOf(payload: Buffer): Buffer {
  const offset = headerLength(payload.length);
  const frame = Buffer.allocUnsafe(offset + payload.length);
  writeHeader(frame, payload.length);
  payload.copy(frame, offset);
  return frame;
}

/** The payload of a frame encodeTextFrame built (a view, no copy). */
export function framePayload(frame: Buffer): Buffer {
  const length = frame[1] as number;
  return frame.subarray(length < 126 ? 2 : length === 126 ? 4 : 10);
}

/**
 * Sends a frame built by encodeTextFrame. Written straight to the TCP
 * socket when ws would write it there at once itself: the WebSocket is
 * open, nothing compresses (no permessage-deflate), and ws has nothing of
 * its own in progress or queued (no compression or Blob read, no
 * fragmented message) that this frame could overtake. Otherwise ws frames
 * the payload itself, in order with what it has queued. Either way the
 * bytes count in the WebSocket's bufferedAmount (the socket's writable
 * length), so slow-consumer accounting is unchanged.
 */
export function sendTextFrame(socket: object, frame: Buffer): void {
  if (writesStraight(internals(socket))) {
    (internals(socket)._socket as Socket).write(frame);
    return;
  }
  internals(socket).send(framePayload(frame), TEXT);
}

/**
 * Sends several frames built by encodeTextFrame, in order: `joined` (their
 * bytes end to end, which other subscribers of the same frames share) in
 * one write when ws would write straight to the socket, else each frame
 * through ws as sendTextFrame does.
 */
export function sendTextFrames(socket: object, frames: readonly Buffer[], joined: Buffer): void {
  const ws = internals(socket);
  if (writesStraight(ws)) {
    (ws._socket as Socket).write(joined);
    return;
  }
  for (const frame of frames) ws.send(framePayload(frame), TEXT);
}

function writesStraight(ws: WebSocketInternals): boolean {
  const tcp = ws._socket;
  const sender = ws._sender;
  return ws.readyState === OPEN && !!tcp && tcp.writable && !!sender
    && sender._state === SENDER_IDLE && sender._queue.length === 0 && sender._firstFragment
    && ws._extensions?.['permessage-deflate'] === undefined;
}
