import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { BusRouter, RemoteBus } from './bus-router.js';
import type { EventFrame } from './event-frame.js';
import type { BusLogger } from './frame-dispatcher.js';
import { PeerTable, type InstanceInfo, type Peer } from './peer-table.js';

export interface ClusterBridgeOptions {
  router: BusRouter;
  /** Command connection: publishes events and control messages. */
  publisher: Redis;
  /** Dedicated pub/sub connection. */
  subscriber: Redis;
  /** Namespace of the Redis channels, e.g. `brainstem:bus`. */
  channelPrefix: string;
  /** Each instance says it is alive this often; one silent for 3.5 beats is forgotten. */
  heartbeatMs: number;
  log: BusLogger;
  /** Where this instance listens and how busy it is, asked at each beat. */
  info(): Omit<InstanceInfo, 'startedAt'>;
  instanceId?: string;
}

/**
 * Control messages on `<prefix>:control`. Interest changes are numbered per
 * instance; a gap (a message lost while Redis reconnected) makes the
 * receiver ask for the sender's full state.
 */
type ControlMessage =
  /** Full interest; `reply: true` (a hello) asks every other instance for theirs. */
  | { op: 'state'; from: string; info: InstanceInfo; version: number; patterns: string[]; reply: boolean }
  | { op: 'interest'; from: string; version: number; add: string[]; remove: string[] }
  | { op: 'beat'; from: string; version: number; info: InstanceInfo }
  | { op: 'sync'; from: string; to: string }
  | { op: 'bye'; from: string };

const NEWLINE = 0x0a;
const EXPIRY_BEATS = 3.5;

/**
 * Makes several gateway processes on one Redis behave as one broker.
 *
 * Each instance announces the patterns its local connections subscribe to
 * on a control channel; the others keep them in a trie of their own. A
 * local publish is then sent, already serialized, to the private channel
 * (`<prefix>:to:<id>`) of each instance with a matching pattern, once per
 * instance, which delivers it to its own subscribers, once per connection.
 * Only events some instance needs cross Redis (retained events, which a
 * replay must be able to count on, go to every instance), and a single instance (no
 * peers) is never attached to the router, so its publishes pay nothing.
 * Pub/sub stays at-most-once: while Redis is unreachable, events for other
 * instances are dropped and local delivery goes on.
 */
export class ClusterBridge implements RemoteBus {
  readonly instanceId: string;
  private readonly router: BusRouter;
  private readonly publisher: Redis;
  private readonly subscriber: Redis;
  private readonly controlChannel: string;
  private readonly ownChannel: string;
  private readonly peers: PeerTable;
  readonly interest: PeerTable['interest'];
  private readonly startedAt = new Date().toISOString();
  private version = 0;
  private pendingAdd = new Set<string>();
  private pendingRemove = new Set<string>();
  private pendingFlush: Promise<void> | undefined;
  private inFlight: Promise<void> | undefined;
  private beatTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private publishErrorLogged = false;

  constructor(private readonly options: ClusterBridgeOptions) {
    this.instanceId = options.instanceId ?? randomUUID();
    this.router = options.router;
    this.publisher = options.publisher;
    this.subscriber = options.subscriber;
    this.controlChannel = `${options.channelPrefix}:control`;
    this.ownChannel = `${options.channelPrefix}:to:${this.instanceId}`;
    this.peers = new PeerTable((id) => `${options.channelPrefix}:to:${id}`, {
      onPeers: (present) => this.router.setRemote(present ? this : null),
      onJoined: (id) => options.log.info({ instanceId: id }, 'bus cluster: instance joined'),
      onLeft: (id) => options.log.info({ instanceId: id }, 'bus cluster: instance left'),
    });
    this.interest = this.peers.interest;
  }

  /**
   * Subscribes to the control channel and its own, then says hello. Does
   * not wait for Redis: the subscriber connection retries on its own, and
   * every (re)connection says hello again, which resynchronizes everyone.
   */
  start(): void {
    this.subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => this.onMessage(channel.toString(), message));
    const join = () => {
      this.subscriber.subscribe(this.controlChannel, this.ownChannel)
        .then(() => this.sendState(true))
        .catch((err: unknown) => this.options.log.warn({ err: (err as Error).message }, 'bus cluster: subscribe failed'));
    };
    this.subscriber.on('ready', join);
    if (this.subscriber.status === 'ready') join();
    this.beatTimer = setInterval(() => this.beat(), this.options.heartbeatMs);
    this.beatTimer.unref();
    this.router.setClusterDescriber(() => this.describe());
  }

  /** Says goodbye, so the others forget this instance at once rather than after its beats stop. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.beatTimer) clearInterval(this.beatTimer);
    this.router.setRemote(null);
    this.router.setClusterDescriber(null);
    if (this.publisher.status === 'ready') {
      await this.sendControl({ op: 'bye', from: this.instanceId }).catch(() => undefined);
    }
  }

  patternAdded(pattern: string): void {
    if (!this.pendingRemove.delete(pattern)) this.pendingAdd.add(pattern);
    this.scheduleFlush();
  }

  patternRemoved(pattern: string): void {
    if (!this.pendingAdd.delete(pattern)) this.pendingRemove.add(pattern);
    this.scheduleFlush();
  }

  interestPropagated(): Promise<void> | undefined {
    return this.pendingFlush ?? this.inFlight;
  }

  get instances(): Iterable<Peer> {
    return this.peers.all;
  }

  /** One message for all of them: the topic, a newline, the event message. */
  send(instances: Iterable<Peer>, topic: string, frame: EventFrame): number {
    let message: Buffer | undefined;
    let sent = 0;
    for (const peer of instances) {
      message ??= Buffer.concat([Buffer.from(`${topic}\n`), frame.payload]);
      this.publisher.publish(peer.channel, message).catch(this.onPublishError);
      sent++;
    }
    return sent;
  }

  describe(): { instanceId: string; instances: object[] } {
    const now = Date.now();
    const self = { id: this.instanceId, self: true, ...this.info(), patterns: this.router.localPatterns().length };
    const others = [...this.peers.all].map((peer) => ({
      id: peer.id,
      self: false,
      ...peer.info,
      patterns: peer.patterns.size,
      lastSeenMs: now - peer.lastSeen,
    }));
    return { instanceId: this.instanceId, instances: [self, ...others] };
  }

  /** Interest changes of one tick leave as one numbered message. */
  private scheduleFlush(): void {
    if (this.pendingFlush) return;
    this.pendingFlush = new Promise<void>((resolve) => {
      setImmediate(() => {
        this.pendingFlush = undefined;
        const add = [...this.pendingAdd];
        const remove = [...this.pendingRemove];
        this.pendingAdd.clear();
        this.pendingRemove.clear();
        if (add.length === 0 && remove.length === 0) {
          resolve();
          return;
        }
        this.version++;
        const sent = this.sendControl({ op: 'interest', from: this.instanceId, version: this.version, add, remove })
          .then(() => undefined, this.onPublishError);
        this.inFlight = sent;
        void sent.then(() => {
          if (this.inFlight === sent) this.inFlight = undefined;
          resolve();
        });
      });
    });
  }

  private sendControl(message: ControlMessage): Promise<number> {
    return this.publisher.publish(this.controlChannel, JSON.stringify(message));
  }

  private sendState(reply: boolean): void {
    if (this.stopped) return;
    this.sendControl({
      op: 'state',
      from: this.instanceId,
      info: this.info(),
      version: this.version,
      patterns: this.router.localPatterns(),
      reply,
    }).catch(this.onPublishError);
  }

  private info(): InstanceInfo {
    return { ...this.options.info(), startedAt: this.startedAt };
  }

  /** Tells the other instances this one's info now, not at the next beat (its port, once it listens). */
  announce(): void {
    if (this.stopped || this.publisher.status !== 'ready') return;
    this.sendControl({ op: 'beat', from: this.instanceId, version: this.version, info: this.info() }).catch(this.onPublishError);
  }

  private beat(): void {
    for (const id of this.peers.forgetSilent(Date.now() - this.options.heartbeatMs * EXPIRY_BEATS)) {
      this.options.log.warn({ instanceId: id }, 'bus cluster: instance silent, forgotten');
    }
    this.announce();
  }

  private onMessage(channel: string, message: Buffer): void {
    if (this.stopped) return;
    if (channel === this.ownChannel) {
      const split = message.indexOf(NEWLINE);
      // Runs in ioredis's event handler, where an escaped error would end the process.
      try {
        if (split > 0) this.router.deliverFromPeer(message.toString('utf8', 0, split), message.subarray(split + 1));
      } catch (err) {
        this.options.log.warn({ err: (err as Error).message }, 'bus cluster: an event from another instance could not be delivered');
      }
      return;
    }
    if (channel !== this.controlChannel) return;
    let control: ControlMessage;
    try {
      control = JSON.parse(message.toString('utf8')) as ControlMessage;
    } catch {
      return;
    }
    if (typeof control !== 'object' || control === null || control.from === this.instanceId) return;
    try {
      this.onControl(control);
    } catch (err) {
      this.options.log.warn({ err: (err as Error).message }, 'bus cluster: malformed control message ignored');
    }
  }

  private onControl(control: ControlMessage): void {
    if (control.op === 'bye') {
      const peer = this.peers.find(control.from);
      if (peer) this.peers.forget(peer);
      return;
    }
    if (control.op === 'sync') {
      if (control.to === this.instanceId) this.sendState(false);
      return;
    }
    const peer = this.peers.seen(control.from);
    switch (control.op) {
      case 'state':
        peer.info = control.info;
        this.peers.replacePatterns(peer, control.patterns);
        peer.version = control.version;
        if (control.reply) this.sendState(false);
        break;
      case 'interest':
        if (control.version !== peer.version + 1) {
          this.requestState(peer);
          break;
        }
        for (const pattern of control.add) this.peers.addPattern(peer, pattern);
        for (const pattern of control.remove) this.peers.removePattern(peer, pattern);
        peer.version = control.version;
        break;
      case 'beat':
        peer.info = control.info;
        if (control.version !== peer.version) this.requestState(peer);
        break;
    }
  }

  private requestState(peer: Peer): void {
    this.sendControl({ op: 'sync', from: this.instanceId, to: peer.id }).catch(this.onPublishError);
  }

  private readonly onPublishError = (err: unknown): void => {
    if (this.publishErrorLogged) return;
    this.publishErrorLogged = true;
    this.options.log.warn({ err: (err as Error).message }, 'bus cluster: redis publish failed; events for other instances are dropped until it is back');
    setTimeout(() => { this.publishErrorLogged = false; }, 10_000).unref();
  };
}
