import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

type Frame = Record<string, unknown>;

/**
 * A scripted `/bus` for the faults a real gateway will not produce on cue:
 * it says welcome (unless told not to), answers `ping`, and otherwise only
 * does what the scenario tells it (answer, stay silent, drop the
 * connection, refuse new ones, hang: answer nothing at all on the current
 * connection). Frames from the client are kept in arrival order; `next`
 * takes the oldest, so a scenario sees exactly what was sent and in what
 * order.
 */
export class FakeBus {
  readonly url: string;
  /** Connections accepted so far. */
  connections = 0;
  /** The query of each accepted connection's URL, in order. */
  readonly queries: Record<string, string>[] = [];
  private socket: WebSocket | null = null;
  private accepting = true;
  private welcoming = true;
  /** The connection that hangs: it answers nothing, keeps nothing, counts the pings it leaves unanswered. */
  private hung: WebSocket | null = null;
  private unansweredPings = 0;
  private pingWaiter: (() => void) | null = null;
  private readonly frames: Frame[] = [];
  private waiter: ((frame: Frame) => void) | null = null;
  private connectionWaiter: (() => void) | null = null;

  private constructor(private readonly http: Server, private readonly wss: WebSocketServer) {
    const { port } = http.address() as AddressInfo;
    this.url = `ws://127.0.0.1:${port}/bus`;
    http.on('upgrade', (request, socket, head) => {
      if (!this.accepting) {
        socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      const query = Object.fromEntries(new URL(request.url ?? '/', 'http://fake').searchParams);
      wss.handleUpgrade(request, socket, head, (ws) => {
        this.queries.push(query);
        this.accept(ws);
      });
    });
  }

  static async start(): Promise<FakeBus> {
    const http = createServer((_request, response) => response.writeHead(404).end());
    // Larger than any client's limit: an oversize frame must arrive here, and fail the scenario.
    const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 * 1024 });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    return new FakeBus(http, wss);
  }

  private accept(ws: WebSocket): void {
    this.socket?.terminate();
    this.socket = ws;
    this.connections++;
    ws.on('error', () => {});
    ws.on('message', (data) => {
      if (ws !== this.socket) return;
      let frame: Frame;
      try {
        frame = JSON.parse(data.toString()) as Frame;
      } catch {
        frame = { unparsable: data.toString().slice(0, 200) };
      }
      if (ws === this.hung) {
        if (frame.action === 'ping') this.unansweredPings++;
        this.pingWaiter?.();
        return;
      }
      if (frame.action === 'ping') {
        ws.send(JSON.stringify(frame.id === undefined ? { pong: Date.now() } : { pong: Date.now(), id: frame.id }));
        return;
      }
      if (this.waiter) {
        const waiter = this.waiter;
        this.waiter = null;
        waiter(frame);
      } else {
        this.frames.push(frame);
      }
    });
    if (this.welcoming) ws.send(JSON.stringify({ welcome: { clientId: `fake-${this.connections}`, name: 'fake', protocol: 1 } }));
    const waiter = this.connectionWaiter;
    this.connectionWaiter = null;
    waiter?.();
  }

  /** The next frame the client sent (pings are answered, not kept). */
  next(timeoutMs: number): Promise<Frame> {
    const frame = this.frames.shift();
    if (frame) return Promise.resolve(frame);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new Error(`the fake gateway received no frame within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = (f) => {
        clearTimeout(timer);
        resolve(f);
      };
    });
  }

  /** Frames received and not yet taken by `next`. */
  unread(): Frame[] {
    return [...this.frames];
  }

  send(frame: Frame): void {
    if (!this.socket) throw new Error('the fake gateway has no connection to send on');
    this.socket.send(JSON.stringify(frame));
  }

  /** Ends the current connection abruptly (no close frame), as a crash or a cut cable would. */
  drop(): void {
    this.socket?.terminate();
    this.socket = null;
    // Frames already received stay queued for `next`: the scenario still sees them, in order.
  }

  /** Closes the connection with a close frame (as the gateway's 4001 `heartbeat lapsed`). */
  closeConnection(code: number, reason: string): void {
    this.socket?.close(code, reason);
    this.socket = null;
  }

  /** Whether new connections get a welcome frame (a server that is not this gateway sends none). */
  setWelcoming(welcoming: boolean): void {
    this.welcoming = welcoming;
  }

  /** The current connection hangs: frames still arrive, nothing answers them (not even `ping`). */
  hang(): void {
    this.hung = this.socket;
    this.unansweredPings = 0;
  }

  /** Resolves once the hung connection has received an application ping. */
  pinged(timeoutMs: number): Promise<void> {
    if (this.unansweredPings > 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pingWaiter = null;
        reject(new Error(`the client sent no {"action":"ping"} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pingWaiter = () => {
        if (this.unansweredPings === 0) return;
        clearTimeout(timer);
        this.pingWaiter = null;
        resolve();
      };
    });
  }

  /** Refuses (503) or accepts new connections. */
  setAccepting(accepting: boolean): void {
    this.accepting = accepting;
  }

  /** Resolves once a connection beyond the first `count` has been accepted. */
  connection(count: number, timeoutMs: number): Promise<void> {
    if (this.connections >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.connectionWaiter = null;
        reject(new Error(`the client did not open connection ${count} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.connectionWaiter = () => {
        clearTimeout(timer);
        if (this.connections >= count) resolve();
      };
    });
  }

  async close(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }
}
