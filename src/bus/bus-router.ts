import { BusConnection, type BusSocket, type ConnectionInfo } from './bus-connection.js';
import { connectionView, firstOf, MAX_LISTED_PATTERNS, type BusCounters, type BusDescription, type BusPage } from './bus-description.js';
import { EventFrame } from './event-frame.js';
import { FanOut } from './fan-out.js';
import { BusError } from './protocol.js';
import { TopicTrie } from './topic-trie.js';
import { TickWriteBatch } from '../streams/tick-write-batch.js';
import { TickFrameBatch } from './tick-frame-batch.js';

export interface BusRouterOptions {
  /** Unsent bytes a connection may have queued before it is dropped as a slow consumer. */
  maxBacklogBytes: number;
  /** Patterns one connection may hold, so that its state stays bounded (default: no limit). */
  maxPatternsPerConnection?: number;
  /** Total length of the patterns one connection may hold (default: no limit). */
  maxPatternBytesPerConnection?: number;
  /** Where a failure contained in fan-out is reported. */
  log?: { error(obj: object, msg?: string): void };
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
  /** The other instances' patterns, each instance the subscriber of its own. */
  readonly interest: { subscribersOf(topic: string): ReadonlySet<RemoteInstance>; hasMatch(topic: string): boolean };
  /** Every other instance. */
  readonly instances: Iterable<RemoteInstance>;
  /** An event published here, to those instances, once each; returns how many. */
  send(instances: Iterable<RemoteInstance>, topic: string, frame: EventFrame): number;
}

/** Another gateway instance, as the router passes it on to RemoteBus.send. */
export interface RemoteInstance {
  readonly id: string;
}

type DetachListener = (connection: BusConnection) => void;

/**
 * The pub/sub core: the registry of connections and their subscriptions,
 * and the routing of an event to them (the topic trie) and to the other
 * instances. It knows nothing of Fastify or of how frames arrive.
 */
export class BusRouter {
  readonly connections = new Map<string, BusConnection>();
  private readonly tally = { connectionsOpened: 0, published: 0, forwardedToPeers: 0, receivedFromPeers: 0 };
  private remote: RemoteBus | null = null;
  private describeCluster: (() => unknown) | null = null;
  private readonly trie = new TopicTrie<BusConnection>();
  private readonly detachListeners: DetachListener[] = [];
  private lastSample = { at: Date.now(), published: 0, delivered: 0 };
  private rates = { publishedPerSecond: 0, deliveredPerSecond: 0 };
  private readonly writes = new TickWriteBatch();
  private readonly frameWrites = new TickFrameBatch();
  private readonly fanOut: FanOut;

  constructor(private readonly options: BusRouterOptions) {
    this.fanOut = new FanOut(options.log);
  }

  get counters(): BusCounters {
    const { connectionsOpened, published, forwardedToPeers, receivedFromPeers } = this.tally;
    const { delivered, slowConsumersDropped } = this.fanOut;
    return { connectionsOpened, published, delivered, slowConsumersDropped, forwardedToPeers, receivedFromPeers };
  }

  attach(socket: BusSocket, info: ConnectionInfo): BusConnection {
    const connection = new BusConnection(socket, info, this.writes, this.frameWrites, this.options.maxBacklogBytes);
    this.connections.set(connection.id, connection);
    this.tally.connectionsOpened++;
    return connection;
  }

  /** Forgets a closed connection and tells the organs that hold state for it. */
  detach(connection: BusConnection): void {
    if (!this.connections.delete(connection.id)) return;
    connection.closing = true;
    for (const pattern of connection.patterns) this.removeFromTrie(pattern, connection);
    connection.patterns.clear();
    connection.patternBytes = 0;
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
    const byteLimit = this.options.maxPatternBytesPerConnection;
    if (byteLimit !== undefined && connection.patternBytes + Buffer.byteLength(pattern) > byteLimit) {
      throw new BusError('RATE_LIMITED', `too many subscriptions: at most ${byteLimit} bytes of patterns per connection`);
    }
    connection.patterns.add(pattern);
    connection.patternBytes += Buffer.byteLength(pattern);
    this.trie.add(pattern, connection);
    if (this.remote && this.trie.countOf(pattern) === 1) this.remote.patternAdded(pattern);
    return true;
  }

  /** Returns false when the connection had no such pattern. */
  unsubscribe(connection: BusConnection, pattern: string): boolean {
    if (!connection.patterns.delete(pattern)) return false;
    connection.patternBytes -= Buffer.byteLength(pattern);
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
   * An event published here: to every connection with a matching pattern,
   * once each, and to the other instances that want it. A retained event
   * goes to every instance, whatever their interest: a subscription that
   * starts from an offset there then misses nothing published here before
   * it heard of it (the event either reaches it after it subscribed, behind
   * the replay, or was stored before its replay read the stream). Returns
   * the number of local connections it was sent to.
   */
  route(topic: string, frame: EventFrame, retained: boolean): number {
    this.tally.published++;
    const connections = this.trie.subscribersOf(topic);
    const remote = this.remote;
    const instances = remote && (retained ? remote.instances : remote.interest.subscribersOf(topic));
    const delivered = this.fanOut.toConnections(connections, topic, frame);
    if (remote && instances) this.tally.forwardedToPeers += remote.send(instances, topic, frame);
    return delivered;
  }

  /** Whether a subscription anywhere in the cluster matches `type` (a request's responders). */
  hasSubscriber(type: string): boolean {
    return this.trie.hasMatch(type) || (this.remote?.interest.hasMatch(type) ?? false);
  }

  /** An event another instance published, already serialized there. */
  deliverFromPeer(topic: string, message: Buffer): number {
    this.tally.receivedFromPeers++;
    const connections = this.trie.subscribersOf(topic);
    return this.fanOut.toConnections(connections, topic, EventFrame.fromPeer(message));
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
      publishedPerSecond: (this.tally.published - this.lastSample.published) / seconds,
      deliveredPerSecond: (this.fanOut.delivered - this.lastSample.delivered) / seconds,
    };
    this.lastSample = { at: now, published: this.tally.published, delivered: this.fanOut.delivered };
  }

  /** The state shown by `GET /bus`: one page of connections, every count. */
  describe(page: BusPage = {}, now = Date.now()): BusDescription {
    const offset = page.offset ?? 0;
    const limit = page.limit ?? Number.MAX_SAFE_INTEGER;
    const listed: BusConnection[] = [];
    let index = 0;
    for (const connection of this.connections.values()) {
      if (listed.length >= limit) break;
      if (index++ >= offset) listed.push(connection);
    }
    return {
      connections: listed.map((connection) => connectionView(connection, now)),
      page: { offset, limit: page.limit ?? this.connections.size, total: this.connections.size },
      subscriptions: Object.fromEntries(firstOf(this.trie.patterns(), MAX_LISTED_PATTERNS).map((pattern) => [pattern, this.trie.countOf(pattern)])),
      patterns: this.trie.patternCount,
      counters: { ...this.counters, connections: this.connections.size },
      rates: this.rates,
      ...(this.describeCluster ? { cluster: this.describeCluster() } : {}),
    };
  }

  /** Subscriber counts per pattern. */
  subscriptionCounts(): Record<string, number> {
    return this.trie.patternCounts();
  }

  /** An event message (a replayed one) within the connection's backlog limit, as routed events are sent. */
  deliver(connection: BusConnection, message: Buffer): boolean {
    return this.fanOut.toConnection(connection, message);
  }
}
