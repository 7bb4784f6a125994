import { connect as natsConnect, type NatsConnection } from 'nats';
import WebSocket from 'ws';
import { closeClients, openClient, subscribeFrame } from './clients.js';
import { isGateway, type RunningServer } from './servers.js';

/**
 * What a scenario does with a server, whatever its wire: WebSocket JSON
 * (brainstem, the seed broker, the wire limit) or NATS. Scenarios drive
 * clients through this and nothing else, so each scenario's logic is
 * written once for every server.
 */
export interface BenchClient {
  /** Every message published on `topic` arrives as text: the frame for WebSocket servers, the payload for NATS. */
  subscribe(topic: string, onMessage: (text: string) => void): void;
  /** Publishes `payload` (JSON text) on `topic`. */
  publish(topic: string, payload: string): void;
  /** Bytes accepted but not yet written to the socket (the publisher's own backpressure). */
  readonly bufferedAmount: number;
  close(): Promise<void>;
}

export interface Transport {
  connect(): Promise<BenchClient>;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * The seed's protocol subset, which all three WebSocket servers
 * understand: `subscribe` and `publish` frames without `id`, so that no
 * server sends receipts the others do not. A WebSocket frame does not say
 * which subscription it matched without parsing it, so each distinct
 * handler of a client sees every message the client receives: scenarios
 * give a client one handler, whatever its topics.
 */
class WsJsonClient implements BenchClient {
  private readonly heads = new Map<string, string>();
  private listening = false;
  private readonly handlers: ((text: string) => void)[] = [];

  constructor(private readonly ws: WebSocket) {}

  subscribe(topic: string, onMessage: (text: string) => void): void {
    if (!this.handlers.includes(onMessage)) this.handlers.push(onMessage);
    if (!this.listening) {
      this.listening = true;
      this.ws.on('message', (data: Buffer) => {
        const text = data.toString();
        for (const handler of this.handlers) handler(text);
      });
    }
    this.ws.send(subscribeFrame(topic));
  }

  publish(topic: string, payload: string): void {
    let head = this.heads.get(topic);
    if (head === undefined) {
      head = `{"action":"publish","message":{"type":${JSON.stringify(topic)},"payload":`;
      this.heads.set(topic, head);
    }
    this.ws.send(`${head}${payload}}}`);
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  close(): Promise<void> {
    return closeClients([this.ws]);
  }
}

/** The `nats` npm client: callback subscriptions, the fastest way it offers to receive. */
class NatsClient implements BenchClient {
  constructor(private readonly nc: NatsConnection) {}

  subscribe(topic: string, onMessage: (text: string) => void): void {
    this.nc.subscribe(topic, { callback: (_err, msg) => onMessage(decoder.decode(msg.data)) });
  }

  publish(topic: string, payload: string): void {
    this.nc.publish(topic, encoder.encode(payload));
  }

  /** The client buffers and flushes by itself and shows no backlog: the scenarios' windows bound it. */
  get bufferedAmount(): number {
    return 0;
  }

  async close(): Promise<void> {
    if (!this.nc.isClosed()) await this.nc.close();
  }
}

export function transportFor(server: RunningServer): Transport {
  if (server.kind === 'nats') {
    return {
      async connect() {
        // No reconnects: a lost connection is a failed run, not something to hide.
        return new NatsClient(await natsConnect({ servers: `127.0.0.1:${server.port}`, reconnect: false }));
      },
    };
  }
  const greets = isGateway(server.kind);
  return { connect: async () => new WsJsonClient(await openClient(server.url, greets)) };
}

/** Opens `count` clients, `parallel` connects at a time. */
export async function connectMany(transport: Transport, count: number, parallel = 100): Promise<BenchClient[]> {
  const clients: BenchClient[] = new Array(count);
  let next = 0;
  async function lane(): Promise<void> {
    while (next < count) {
      const index = next++;
      clients[index] = await transport.connect();
    }
  }
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, lane));
  return clients;
}

export async function closeAll(clients: BenchClient[]): Promise<void> {
  await Promise.all(clients.map((client) => client.close()));
}
