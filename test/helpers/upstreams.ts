import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface HttpUpstream {
  url: string;
  /** Every request that reached it, in order. */
  seen: SeenRequest[];
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** A real HTTP service that answers every request with what it received, as JSON. */
export async function startHttpUpstream(t: Teardown): Promise<HttpUpstream> {
  const seen: SeenRequest[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const record = { method: request.method ?? '', url: request.url ?? '', headers: request.headers, body: Buffer.concat(chunks).toString() };
      seen.push(record);
      response.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'echo' });
      response.end(JSON.stringify(record));
    });
  });
  const port = await listen(server);
  t.teardown(() => new Promise((resolve) => {
    server.closeAllConnections();
    server.close(resolve);
  }));
  return { url: `http://127.0.0.1:${port}`, seen };
}

export interface WsUpstream {
  url: string;
  /** The request URL of each connection it accepted. */
  connections: string[];
}

/** A real WebSocket service that echoes each message back, prefixed with `echo:`. */
export async function startWsEchoUpstream(t: Teardown): Promise<WsUpstream> {
  const connections: string[] = [];
  const server = createServer((_request, response) => {
    response.writeHead(426).end();
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (socket, request) => {
    connections.push(request.url ?? '');
    socket.on('message', (data) => socket.send(`echo:${data.toString()}`));
  });
  const port = await listen(server);
  t.teardown(() => new Promise((resolve) => {
    for (const client of wss.clients) client.terminate();
    wss.close();
    server.close(resolve);
  }));
  return { url: `http://127.0.0.1:${port}`, connections };
}

/** A loopback URL nothing listens on: a port taken and released at once. */
export async function deadUpstreamUrl(): Promise<string> {
  const server = createNetServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}
