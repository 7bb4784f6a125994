/**
 * The contract between src/streams/ws-adapter.ts and the installed `ws`:
 * the private fields it reads and the frame layout it writes. When ws is
 * upgraded this fails first; re-check the adapter against ws's
 * lib/sender.js and lib/websocket.js, then move the pin.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Socket, type AddressInfo } from 'node:net';
import t from 'tap';
import WebSocket, { WebSocketServer } from 'ws';
import {
  encodeTextFrame, encodeTextFrameOf, framePayload, releaseUpgrade, sendTextFrame, sendTextFrames, tcpSocketOf,
} from '../src/streams/ws-adapter.js';

const require = createRequire(import.meta.url);
const PINNED_WS = '8.23.0';

type SenderFrame = (data: Buffer, options: Record<string, unknown>) => Buffer[];
const { Sender } = require('ws') as { Sender: { frame: SenderFrame } };
const wsPackage = join(dirname(require.resolve('ws')), 'package.json');

/** A ws server and one client connected to it; `server` is the server side's WebSocket. */
async function pair(t: { teardown(fn: () => Promise<void>): void }, deflate = false): Promise<{ server: WebSocket; client: WebSocket; texts: string[] }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: deflate ? { threshold: 0 } : false });
  await once(wss, 'listening');
  const { port } = wss.address() as AddressInfo;
  const accepted = once(wss, 'connection');
  const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: deflate });
  const texts: string[] = [];
  client.on('message', (data: Buffer) => texts.push(data.toString()));
  const [server] = (await accepted) as [WebSocket];
  await once(client, 'open');
  t.teardown(async () => {
    client.terminate();
    for (const socket of wss.clients) socket.terminate();
    await new Promise((resolve) => wss.close(resolve));
  });
  return { server, client, texts };
}

async function receive(texts: string[], count: number): Promise<string[]> {
  const deadline = Date.now() + 5000;
  while (texts.length < count) {
    if (Date.now() > deadline) throw new Error(`received ${texts.length} of ${count} messages`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return texts;
}

t.test('the installed ws is the version the adapter was checked against', async (t) => {
  const { version } = JSON.parse(readFileSync(wsPackage, 'utf8')) as { version: string };
  t.equal(version, PINNED_WS, 'ws changed: re-check src/streams/ws-adapter.ts, then update PINNED_WS');
});

t.test('a frame built once is byte for byte what ws frames for the same text, at every length encoding', async (t) => {
  for (const length of [0, 1, 125, 126, 300, 65535, 65536, 70_000]) {
    const text = 'é'.repeat(Math.floor(length / 2)) + 'x'.repeat(length % 2);
    const payload = Buffer.from(text);
    const ws = Buffer.concat(Sender.frame(payload, { fin: true, opcode: 1, mask: false, readOnly: false, rsv1: false }));
    t.same(encodeTextFrame(text), ws, `${payload.length} bytes from a string`);
    t.same(encodeTextFrameOf(payload), ws, `${payload.length} bytes from a buffer`);
    t.equal(framePayload(encodeTextFrame(text)).toString(), text, `${payload.length} bytes: the payload view`);
  }
});

t.test('an open server-side WebSocket has the private fields the adapter reads', async (t) => {
  const { server } = await pair(t);
  const internals = server as unknown as {
    _socket: unknown; _sender: { _state: unknown; _queue: unknown; _firstFragment: unknown }; _extensions: unknown;
  };
  t.ok(internals._socket instanceof Socket, '_socket is the TCP socket');
  t.equal(tcpSocketOf(server), internals._socket, 'tcpSocketOf finds it');
  t.equal(internals._sender._state, 0, '_sender._state is 0 when idle');
  t.ok(Array.isArray(internals._sender._queue), '_sender._queue is an array');
  t.equal(internals._sender._firstFragment, true, '_sender._firstFragment is true between messages');
  t.same(internals._extensions, {}, '_extensions holds nothing without permessage-deflate');
  t.doesNotThrow(() => releaseUpgrade(server), 'releasing the upgrade response of a plain ws server is harmless');
});

t.test('frames written directly arrive in order with what ws sends itself', async (t) => {
  const { server, texts } = await pair(t);
  server.send('one');
  sendTextFrame(server, encodeTextFrame('two'));
  server.send('three');
  sendTextFrame(server, encodeTextFrame('x'.repeat(70_000)));
  server.send('five');
  t.same((await receive(texts, 5)).map((s) => (s.length > 10 ? `${s.length}` : s)), ['one', 'two', 'three', '70000', 'five']);
});

t.test('several frames go out as their joined bytes in one write, in order with what ws sends itself', async (t) => {
  const { server, texts } = await pair(t);
  const tcp = tcpSocketOf(server) as unknown as Socket;
  const writes: Buffer[] = [];
  const write = tcp.write.bind(tcp) as (chunk: Buffer) => boolean;
  tcp.write = ((chunk: Buffer) => {
    writes.push(chunk);
    return write(chunk);
  }) as typeof tcp.write;
  const frames = [encodeTextFrame('two'), encodeTextFrame('three')];
  const joined = Buffer.concat(frames);
  server.send('one');
  sendTextFrames(server, frames, joined);
  server.send('four');
  t.same(await receive(texts, 4), ['one', 'two', 'three', 'four']);
  t.ok(writes.includes(joined), 'the joined buffer itself, in one write');
});

t.test('with permessage-deflate, several frames go through ws one by one, in order', async (t) => {
  const { server, texts } = await pair(t, true);
  const frames = [encodeTextFrame('b'), encodeTextFrame('c')];
  server.send('a'.repeat(5000));
  sendTextFrames(server, frames, Buffer.concat(frames));
  server.send('d');
  t.same((await receive(texts, 4)).map((s) => s.slice(0, 1)), ['a', 'b', 'c', 'd']);
});

t.test('a direct write counts in bufferedAmount, as slow-consumer accounting needs', async (t) => {
  const { server, texts } = await pair(t);
  const tcp = tcpSocketOf(server);
  if (!tcp) throw new Error('no TCP socket');
  tcp.cork();
  const before = server.bufferedAmount;
  const frame = encodeTextFrame('y'.repeat(1000));
  sendTextFrame(server, frame);
  t.equal(server.bufferedAmount, before + frame.length, 'the frame is in the socket\'s writable length');
  tcp.uncork();
  t.same(await receive(texts, 1), ['y'.repeat(1000)]);
});

t.test('with permessage-deflate, ws frames (and compresses) the payload itself, in order', async (t) => {
  const { server, texts } = await pair(t, true);
  t.not((server as unknown as { _extensions: Record<string, unknown> })._extensions['permessage-deflate'], undefined, 'deflate negotiated');
  server.send('a'.repeat(5000));
  sendTextFrame(server, encodeTextFrame('b'));
  server.send('c');
  t.same((await receive(texts, 3)).map((s) => s.slice(0, 1)), ['a', 'b', 'c']);
});

t.test('in the middle of a fragmented message, the frame goes through ws and does not cut into it', async (t) => {
  const { server, texts } = await pair(t);
  server.send('first half, ', { fin: false });
  t.equal((server as unknown as { _sender: { _firstFragment: boolean } })._sender._firstFragment, false, 'ws marks the message unfinished');
  sendTextFrame(server, encodeTextFrame('second half'));
  t.same(await receive(texts, 1), ['first half, second half'], 'ws continued its own message with the payload');
});

t.test('a closed WebSocket is not written to directly', async (t) => {
  const { server, client } = await pair(t);
  const closed = once(server, 'close');
  client.close();
  await closed;
  const tcp = (server as unknown as { _socket: Socket })._socket;
  t.doesNotThrow(() => sendTextFrame(server, encodeTextFrame('late')), 'ws handles the send after close');
  t.ok(tcp.destroyed, 'the TCP socket is gone');
});
