import { BusConnection, type BusSocket, type ConnectionInfo } from './bus-connection.js';
import type { ActionOutcome } from './frame-dispatcher.js';
import { CloseCode } from '../protocol/close-codes.js';
import { BusError, type BusEvent, type ClientFrame } from './protocol.js';
import { EVENT_CLOSE, EVENT_OPEN, retainedFrame } from './history/offsets.js';
import { TopicTrie } from './topic-trie.js';
import type { PublishPath, Published, Stored } from './history/publish-order.js';
import { TickWriteBatch } from '../streams/tick-write-batch.js';
import { TickFrameBatch } from './tick-frame-batch.js';
import { encodeTextFrame, encodeTextFrameOf, framePayload } from '../streams/ws-adapter.js';

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
  /**
   * A retained event published here: to every other instance, whatever
   * their interest. A subscription that starts from an offset then misses
   * nothing published on another instance that had not yet heard of it: the
   * event either reached it after it subscribed (and waits behind the
   * replay), or was stored before its replay read the stream.
   */
  forwardToAll(type: string, frame: Buffer): void;
}

/** At most this many patterns are listed per connection, and in `subscriptions`: the answer stays bounded. */
export const MAX_LISTED_PATTERNS = 1000;

export interface BusPage {
  offset?: number;
  limit?: number;
}

/**
 * Retained topics and msgId deduplication (src/bus/history), as the router
 * sees them. Events of topics no rule retains, without msgId, never reach it.
 */
export interface RetainedHistory {
  /** Index of the rule retaining this type, or -1. */
  ruleOf(type: string): number;
  /**
   * Stores the serialized event (`rule` ≥ 0) and/or claims its msgId.
   * Resolves its offset ('' when not retained), or null when the msgId was
   * already seen on that topic. Rejects with UNAVAILABLE.
   */
  keep(type: string, msgId: string | undefined, rule: number, json: Buffer): Promise<string | null>;
  /** A subscribe with `since` or `last`: replay, then live. */
  resume(connection: BusConnection, pattern: string, frame: ClientFrame): Promise<ActionOutcome>;
}


export interface BusDescription {
  /** One page of the connections, oldest first. */
  connections: {
    clientId: string;
    name: string | null;
    remoteAddress: string;
    connectedAt: string;
    ageMs: number;
    /** Its patterns (the first MAX_LISTED_PATTERNS). */
    subscriptions: string[];
    subscriptionCount: number;
    framesIn: number;
    framesOut: number;
  }[];
  page: { offset: number; limit: number; total: number };
  /** Subscribers per pattern (the first MAX_LISTED_PATTERNS patterns). */
  subscriptions: Record<string, number>;
  patterns: number;
  counters: BusCounters & { connections: number };
  rates: { publishedPerSecond: number; deliveredPerSecond: number };
  /** The gateway instances sharing this bus through Redis, when clustering is on. */
  cluster?: unknown;
}

type DetachListener = (connection: BusConnection) => void;
type PublishObserver = (event: BusEvent, delivered: number) => void;

/**
 * The `{"event": …}` message as one complete WebSocket frame. A payload
 * nested too deeply for JSON.stringify (it recurses; a 1 MiB frame of
 * brackets overflows the stack) is the publisher's mistake: refused as
 * INVALID_FRAME before anyone gets it.
 */
function eventFrame(event: BusEvent): Buffer {
  try {
    return encodeTextFrame(`{"event":${JSON.stringify(event)}}`);
  } catch (err) {
    if (err instanceof RangeError) throw new BusError('INVALID_FRAME', 'message is nested too deeply');
    throw err;
  }
}

function firstOf(items: Iterable<string>, max: number): string[] {
  const first: string[] = [];
  for (const item of items) {
    if (first.length >= max) break;
    first.push(item);
  }
  return first;
}

/**
 * The pub/sub core: the registry of connections and their subscriptions.
 * It knows nothing of Fastify or of how frames arrive.
 */
export class BusRouter implements PublishPath {
  readonly connections = new Map<string, BusConnection>();
  readonly counters: BusCounters = {
    connectionsOpened: 0, published: 0, delivered: 0, slowConsumersDropped: 0, forwardedToPeers: 0, receivedFromPeers: 0,
  };
  private remote: RemoteBus | null = null;
  history: RetainedHistory | null = null;
  private describeCluster: (() => unknown) | null = null;
  private readonly trie = new TopicTrie<BusConnection>();
  private readonly detachListeners: DetachListener[] = [];
  private publishObserver: PublishObserver | null = null;
  private publishSeq = 0;
  private lastSample = { at: Date.now(), published: 0, delivered: 0 };
  private rates = { publishedPerSecond: 0, deliveredPerSecond: 0 };
  private readonly writes = new TickWriteBatch();
  private readonly frameWrites = new TickFrameBatch();

  constructor(private readonly options: BusRouterOptions) {}

  attach(socket: BusSocket, info: ConnectionInfo): BusConnection {
    const connection = new BusConnection(socket, info, this.writes, this.frameWrites);
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

  /** Is this event stored (or its msgId claimed) before it is delivered? */
  storesFirst(event: BusEvent): boolean {
    return this.history !== null && (event.msgId !== undefined || this.history.ruleOf(event.type) >= 0);
  }

  /**
   * Publishes and answers how: an event of a retained topic (or with a
   * msgId) is stored (or its msgId claimed) first and delivered once Redis
   * has it, in the order of publishing; a repeated msgId is delivered to no
   * one. Every other event takes the direct path at once.
   */
  publishWithReceipt(event: BusEvent): Published | Promise<Published> {
    if (!this.storesFirst(event)) return { delivered: this.publishNow(event) };
    return this.store(event).then((stored) => this.deliverStored(event, stored));
  }

  /** The first half of a stored publish (`storesFirst`): resolves what `deliverStored` needs. */
  store(event: BusEvent): Promise<Stored> {
    const history = this.history as RetainedHistory;
    const json = Buffer.from(JSON.stringify(event));
    return history.keep(event.type, event.msgId, history.ruleOf(event.type), json).then((offset) => ({ json, offset }));
  }

  /** The second half: delivers a stored event (nothing for a repeated msgId). */
  deliverStored(event: BusEvent, { json, offset }: Stored): Published {
    if (offset === null) return { delivered: 0, duplicate: true };
    this.counters.published++;
    const payload = offset === '' ? Buffer.concat([EVENT_OPEN, json, EVENT_CLOSE]) : retainedFrame(json, offset);
    let frame: Buffer | undefined;
    const delivered = this.deliverLocally(event.type, () => (frame ??= encodeTextFrameOf(payload)));
    if (offset === '') this.remote?.forward(event.type, () => payload);
    else this.remote?.forwardToAll(event.type, payload);
    this.publishObserver?.(event, delivered);
    return offset === '' ? { delivered } : { delivered, offset };
  }

  /**
   * The gateway's own events (queue outcomes, heartbeats): published as
   * above, without a receipt. Returns the connections reached at once (0
   * for a retained event: it is delivered once stored; a store that fails
   * is logged by the history).
   */
  publish(event: BusEvent): number {
    const published = this.publishWithReceipt(event);
    if ('then' in published) {
      published.catch(() => undefined);
      return 0;
    }
    return published.delivered;
  }

  /**
   * Delivers an event to every connection with a matching pattern, once
   * each, and to the other instances that have one. The event is
   * serialized and framed once, whatever the number of subscribers: every
   * subscriber's socket gets the same WebSocket frame. Returns the number
   * of local connections it was sent to.
   */
  publishNow(event: BusEvent): number {
    this.counters.published++;
    let frame: Buffer | undefined;
    const serialize = () => (frame ??= eventFrame(event));
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
      // One subscriber's failure stays its own: the others still get the event.
      try {
        // A subscription replaying history: live events wait behind the replay.
        if (connection.hold) connection.hold.push(type, framePayload(frame()));
        else if (connection.replayed?.covers(type, frame())) return;
        else if (this.deliverFrame(connection, frame())) delivered++;
      } catch (err) {
        this.options.log?.error({ err, clientId: connection.id, type }, 'bus: delivering an event to one subscriber failed');
      }
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
      connections: listed.map((c) => ({
        clientId: c.id,
        name: c.name,
        remoteAddress: c.remoteAddress,
        connectedAt: new Date(c.connectedAt).toISOString(),
        ageMs: now - c.connectedAt,
        subscriptions: firstOf(c.patterns, MAX_LISTED_PATTERNS),
        subscriptionCount: c.patterns.size,
        framesIn: c.framesIn,
        framesOut: c.framesOut,
      })),
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
    if (connection.unsentBytes + bytes > this.options.maxBacklogBytes) {
      this.counters.slowConsumersDropped++;
      connection.close(CloseCode.POLICY_VIOLATION, 'slow consumer');
      return false;
    }
    return true;
  }
}
