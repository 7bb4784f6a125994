import { BusConnection, type BusSocket, type ConnectionInfo } from './bus-connection.js';
import { BusError, CloseCode, type BusEvent } from './protocol.js';
import { TopicTrie } from './topic-trie.js';
import { TickWriteBatch } from '../streams/tick-write-batch.js';
import { encodeTextFrame, encodeTextFrameOf, framePayload } from '../streams/ws-adapter.js';

export interface BusRouterOptions {
  /** Unsent bytes a connection may have queued before it is dropped as a slow consumer. */
  maxBacklogBytes: number;
  /** Patterns one connection may hold, so that its state stays bounded (default: no limit). */
  maxPatternsPerConnection?: number;
}

export interface BusCounters {
  connectionsOpened: number;
  published: number;
  delivered: number;
  slowConsumersDropped: number;
  /** Events sent to other instances of the cluster (one per instance). */
  forwardedToPeers: number;
  /** Events other instances sent here for local subscribers. */
  receivedFromPeers: number;
}

/**
 * The rest of the cluster, as the router sees it (ClusterBridge). Attached
 * only while other instances exist: alone, publishing pays nothing for it.
 */
export interface RemoteBus {
  /** A pattern got its first local subscriber; resolves once the others know. */
  patternAdded(pattern: string): void;
  /** A pattern lost its last local subscriber. */
  patternRemoved(pattern: string): void;
  /** Resolves when the interest changes made so far have reached Redis. */
  interestPropagated(): Promise<void> | undefined;
  /** An event published here: to every other instance with a matching pattern, once. */
  forward(type: string, frame: () => Buffer): void;
  /** Whether another instance has a subscriber for `type`. */
  hasInterest(type: string): boolean;
}

export interface BusDescription {
  connections: {
    clientId: string;
    name: string | null;
    remoteAddress: string;
    connectedAt: string;
    ageMs: number;
    subscriptions: string[];
    framesIn: number;
    framesOut: number;
  }[];
  subscriptions: Record<string, number>;
  counters: BusCounters & { connections: number };
  rates: { publishedPerSecond: number; deliveredPerSecond: number };
  /** The gateway instances sharing this bus through Redis, when clustering is on. */
  cluster?: unknown;
}

type DetachListener = (connection: BusConnection) => void;
type PublishObserver = (event: BusEvent, delivered: number) => void;

/**
 * The pub/sub core: the registry of connections and their subscriptions.
 * It knows nothing of Fastify or of how frames arrive.
 */
export class BusRouter {
  readonly connections = new Map<string, BusConnection>();
  readonly counters: BusCounters = {
    connectionsOpened: 0, published: 0, delivered: 0, slowConsumersDropped: 0, forwardedToPeers: 0, receivedFromPeers: 0,
  };
  private remote: RemoteBus | null = null;
  private describeCluster: (() => unknown) | null = null;
  private readonly trie = new TopicTrie<BusConnection>();
  private readonly detachListeners: DetachListener[] = [];
  private publishObserver: PublishObserver | null = null;
  private publishSeq = 0;
  private lastSample = { at: Date.now(), published: 0, delivered: 0 };
  private rates = { publishedPerSecond: 0, deliveredPerSecond: 0 };
  private readonly writes = new TickWriteBatch();

  constructor(private readonly options: BusRouterOptions) {}

  attach(socket: BusSocket, info: ConnectionInfo): BusConnection {
    const connection = new BusConnection(socket, info, this.writes);
    this.connections.set(connection.id, connection);
    this.counters.connectionsOpened++;
    return connection;
  }

  /** Forgets a closed connection and tells the organs that hold state for it. */
  detach(connection: BusConnection): void {
    if (!this.connections.delete(connection.id)) return;
    connection.closing = true;
    for (const pattern of connection.patterns) this.removeFromTrie(pattern, connection);
    connection.patterns.clear();
    for (const listener of this.detachListeners) listener(connection);
  }

  onDetach(listener: DetachListener): void {
    this.detachListeners.push(listener);
  }

  /**
   * Returns false when the connection already had this pattern; throws
   * RATE_LIMITED when it holds as many patterns as it may.
   */
  subscribe(connection: BusConnection, pattern: string): boolean {
    if (connection.patterns.has(pattern)) return false;
    const limit = this.options.maxPatternsPerConnection;
    if (limit !== undefined && connection.patterns.size >= limit) {
      throw new BusError('RATE_LIMITED', `too many subscriptions: at most ${limit} patterns per connection`);
    }
    connection.patterns.add(pattern);
    this.trie.add(pattern, connection);
    if (this.remote && this.trie.countOf(pattern) === 1) this.remote.patternAdded(pattern);
    return true;
  }

  /** Returns false when the connection had no such pattern. */
  unsubscribe(connection: BusConnection, pattern: string): boolean {
    if (!connection.patterns.delete(pattern)) return false;
    this.removeFromTrie(pattern, connection);
    return true;
  }

  /**
   * Resolves when the other instances know of the subscriptions made so
   * far; undefined when there are none to tell (a subscribe's receipt waits
   * for it, so that an event published anywhere after the receipt arrives).
   */
  interestPropagated(): Promise<void> | undefined {
    return this.remote?.interestPropagated();
  }

  /** Every pattern with a local subscriber: this instance's interest. */
  localPatterns(): string[] {
    return [...this.trie.patterns()];
  }

  /** Attaches the rest of the cluster (or detaches it: null). */
  setRemote(remote: RemoteBus | null): void {
    this.remote = remote;
  }

  /** What `GET /bus` shows under `cluster`. */
  setClusterDescriber(describe: (() => unknown) | null): void {
    this.describeCluster = describe;
  }

  /**
   * Delivers an event to every connection with a matching pattern, once
   * each, and to the other instances that have one. The event is
   * serialized and framed once, whatever the number of subscribers: every
   * subscriber's socket gets the same WebSocket frame. Returns the number
   * of local connections it was sent to.
   */
  publish(event: BusEvent): number {
    this.counters.published++;
    let frame: Buffer | undefined;
    const serialize = () => (frame ??= encodeTextFrame(`{"event":${JSON.stringify(event)}}`));
    const delivered = this.deliverLocally(event.type, serialize);
    this.remote?.forward(event.type, () => framePayload(serialize()));
    this.publishObserver?.(event, delivered);
    return delivered;
  }

  /** Whether a subscription anywhere in the cluster matches `type` (a request's responders). */
  hasSubscriber(type: string): boolean {
    return this.trie.hasMatch(type) || (this.remote?.hasInterest(type) ?? false);
  }

  /** Follows every publish made here (span export); one at most, none by default. */
  observePublishes(observer: PublishObserver | null): void {
    this.publishObserver = observer;
  }

  /** An event another instance published, already serialized there. */
  deliverFromPeer(type: string, payload: Buffer): number {
    this.counters.receivedFromPeers++;
    let frame: Buffer | undefined;
    return this.deliverLocally(type, () => (frame ??= encodeTextFrameOf(payload)));
  }

  /** `frame()`: the event's complete WebSocket frame, built at the first match. */
  private deliverLocally(type: string, frame: () => Buffer): number {
    const seq = ++this.publishSeq;
    let delivered = 0;
    this.trie.forEachMatch(type, (connection) => {
      if (connection.lastPublish === seq) return;
      connection.lastPublish = seq;
      if (this.deliverFrame(connection, frame())) delivered++;
    });
    this.counters.delivered += delivered;
    return delivered;
  }

  private removeFromTrie(pattern: string, connection: BusConnection): void {
    if (this.trie.remove(pattern, connection) && this.remote && this.trie.countOf(pattern) === 0) {
      this.remote.patternRemoved(pattern);
    }
  }

  /**
   * One liveness round: drops the connections that left two pings
   * unanswered, pings the others. Call it every ping interval.
   */
  sweepDeadPeers(): void {
    for (const connection of this.connections.values()) {
      if (connection.missedPongs >= 2) {
        connection.closing = true;
        connection.socket.terminate();
        continue;
      }
      connection.missedPongs++;
      connection.socket.ping();
    }
  }

  /** Per-second rates since the previous call; call it on a steady timer. */
  sampleRates(now = Date.now()): void {
    const seconds = (now - this.lastSample.at) / 1000;
    if (seconds <= 0) return;
    this.rates = {
      publishedPerSecond: (this.counters.published - this.lastSample.published) / seconds,
      deliveredPerSecond: (this.counters.delivered - this.lastSample.delivered) / seconds,
    };
    this.lastSample = { at: now, published: this.counters.published, delivered: this.counters.delivered };
  }

  /** The state shown by `GET /bus`. */
  describe(now = Date.now()): BusDescription {
    return {
      connections: [...this.connections.values()].map((c) => ({
        clientId: c.id,
        name: c.name,
        remoteAddress: c.remoteAddress,
        connectedAt: new Date(c.connectedAt).toISOString(),
        ageMs: now - c.connectedAt,
        subscriptions: [...c.patterns],
        framesIn: c.framesIn,
        framesOut: c.framesOut,
      })),
      subscriptions: this.trie.patternCounts(),
      counters: { ...this.counters, connections: this.connections.size },
      rates: this.rates,
      ...(this.describeCluster ? { cluster: this.describeCluster() } : {}),
    };
  }

  /** Subscriber counts per pattern. */
  subscriptionCounts(): Record<string, number> {
    return this.trie.patternCounts();
  }

  /**
   * Sends a frame unless the connection's unsent backlog is over the limit;
   * then closes it (1008 `slow consumer`) so it never stalls the others or
   * grows the gateway's memory.
   * Writes are batched per tick (TickWriteBatch): the many events one read
   * of a publisher's socket produces leave in one write per subscriber.
   */
  deliver(connection: BusConnection, frame: Buffer): boolean {
    if (!this.roomFor(connection, frame.length)) return false;
    connection.sendRaw(frame);
    return true;
  }

  /** deliver() for a complete WebSocket frame (encodeTextFrame), shared by every subscriber of a publish. */
  private deliverFrame(connection: BusConnection, frame: Buffer): boolean {
    if (!this.roomFor(connection, frame.length)) return false;
    connection.sendFrame(frame);
    return true;
  }

  private roomFor(connection: BusConnection, bytes: number): boolean {
    if (connection.closing) return false;
    if (connection.socket.bufferedAmount + bytes > this.options.maxBacklogBytes) {
      this.counters.slowConsumersDropped++;
      connection.close(CloseCode.POLICY_VIOLATION, 'slow consumer');
      return false;
    }
    return true;
  }
}
