import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { CorkableStream } from './tick-write-batch.js';

/**
 * The only code that reaches under `ws` and @fastify/websocket's public
 * API; test/ws-internals-contract.test.ts checks each reach against the
 * installed versions.
 */

type UpgradedTcp = Socket & { _httpMessage?: ServerResponse | null };

function tcpOf(socket: WebSocket): UpgradedTcp | undefined {
  return (socket as unknown as { _socket?: UpgradedTcp })._socket;
}

/**
 * The TCP socket under a `ws` WebSocket (its `_socket`, unchanged since
 * ws 1), which the router corks to batch a tick's events into one write.
 * Without it the bus still works, one write per event.
 */
export function tcpSocketOf(socket: WebSocket): CorkableStream | null {
  const stream = tcpOf(socket) as Partial<CorkableStream> | undefined;
  const corkable = typeof stream?.cork === 'function' && typeof stream.uncork === 'function' && typeof stream.writableCorked === 'number';
  return corkable ? (stream as CorkableStream) : null;
}

/**
 * Lets go of what the HTTP upgrade leaves attached to a connection that may
 * live for days: @fastify/websocket's `error` listener (a closure over the
 * Fastify request and reply) and the HTTP response still assigned to the
 * TCP socket (it holds the request, its headers and its logger). About
 * 3 KB of heap per idle connection (measured with heap snapshots).
 */
export function releaseUpgrade(socket: WebSocket): void {
  socket.removeAllListeners('error');
  const tcp = tcpOf(socket);
  const response = tcp?._httpMessage;
  if (tcp && response && typeof response.detachSocket === 'function') response.detachSocket(tcp);
}
