/**
 * The "wire limit": the ceiling for any broker built on `ws`. A bare `ws`
 * server with no parsing, no routing and no normalization: a socket whose
 * frame starts like a subscribe becomes a subscriber, and every other frame
 * is sent, as the one buffer it arrived in, to every subscriber.
 *
 * Run: PORT=7001 node dist/bench/baselines/wire-limit.js
 */
import { WebSocketServer, type WebSocket } from 'ws';

const SUBSCRIBE = Buffer.from('{"action":"subscribe"');
const TEXT = { binary: false } as const;

const subscribers = new Set<WebSocket>();
const port = Number(process.env.PORT ?? 7001);
const server = new WebSocketServer({ port, host: process.env.HOST ?? '127.0.0.1' });

server.on('connection', (socket) => {
  socket.on('message', (data: Buffer) => {
    if (data.subarray(0, SUBSCRIBE.length).equals(SUBSCRIBE)) {
      subscribers.add(socket);
      return;
    }
    for (const subscriber of subscribers) subscriber.send(data, TEXT);
  });
  socket.on('close', () => subscribers.delete(socket));
  socket.on('error', () => socket.terminate());
});

server.on('listening', () => process.stdout.write(`wire limit listening on ${port}\n`));
process.once('SIGTERM', () => {
  for (const socket of server.clients) socket.terminate();
  server.close(() => process.exit(0));
});
