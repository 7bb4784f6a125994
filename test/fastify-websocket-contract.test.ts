import { once } from 'node:events';
import { createRequire } from 'node:module';
import websocket from '@fastify/websocket';
import Fastify from 'fastify';
import t from 'tap';
import WebSocket from 'ws';
import { releaseUpgrade, tcpSocketOf } from '../src/streams/ws-adapter.js';

// What src/streams/ws-adapter.ts reaches under @fastify/websocket (and the ws parts it shares),
// checked against the installed versions. Upgrading either: run this first.
const require = createRequire(import.meta.url);
const versionOf = (name: string) => (require(`${name}/package.json`) as { version: string }).version;

t.test('the installed versions are those this contract was checked against', async (t) => {
  t.equal(versionOf('ws'), '8.23.0');
  t.equal(versionOf('@fastify/websocket'), '11.3.6');
});

t.test('an upgraded socket: a corkable TCP socket, an error listener and the upgrade response to let go of', async (t) => {
  const app = Fastify();
  await app.register(websocket);
  const seen: Record<string, unknown> = {};
  app.get('/ws', { websocket: true }, (socket) => {
    const tcp = tcpSocketOf(socket);
    seen.corkable = tcp !== null;
    seen.uncorkedAtFirst = tcp?.writableCorked;
    tcp?.cork();
    seen.corkedOnce = tcp?.writableCorked;
    tcp?.uncork();
    seen.errorListenersBefore = socket.listenerCount('error');
    const raw = (socket as unknown as { _socket?: { _httpMessage?: unknown } })._socket;
    seen.responseBefore = raw?._httpMessage != null;
    releaseUpgrade(socket);
    seen.errorListenersAfter = socket.listenerCount('error');
    seen.responseAfter = raw?._httpMessage != null;
    socket.send('hello');
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  const { port } = app.server.address() as { port: number };
  const client = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  const [message] = await once(client, 'message') as [Buffer];
  client.terminate();
  t.equal(message.toString(), 'hello', 'the socket still works after letting go');
  t.same(seen, {
    corkable: true, uncorkedAtFirst: 0, corkedOnce: 1,
    errorListenersBefore: 1, responseBefore: true,
    errorListenersAfter: 0, responseAfter: false,
  });
});
