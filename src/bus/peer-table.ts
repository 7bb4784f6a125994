import type { RemoteInstance } from './bus-router.js';
import { isValidPattern } from './topic.js';
import { TopicTrie } from './topic-trie.js';

/** What an instance tells the others about itself (and `GET /bus` shows). */
export interface InstanceInfo {
  host: string | null;
  port: number | null;
  pid: number;
  startedAt: string;
  connections: number;
}

/** Another gateway instance: its private channel, its patterns and the last version of them applied. */
export class Peer implements RemoteInstance {
  readonly patterns = new Set<string>();
  version = -1;
  info: InstanceInfo | null = null;
  lastSeen = Date.now();
  constructor(readonly id: string, readonly channel: string) {}
}

export interface PeerTableEvents {
  /** The first other instance joined (attach to the router), or the last one left (detach: publishes pay nothing). */
  onPeers(present: boolean): void;
  onJoined(id: string): void;
  onLeft(id: string): void;
}

/**
 * The other instances of the cluster and what each wants: one trie of
 * their patterns, each instance the subscriber of its own, so a publish
 * finds every instance with a matching pattern in one lookup.
 */
export class PeerTable {
  readonly interest = new TopicTrie<Peer>();
  private readonly peers = new Map<string, Peer>();

  constructor(private readonly channelOf: (id: string) => string, private readonly events: PeerTableEvents) {}

  get all(): Iterable<Peer> {
    return this.peers.values();
  }

  find(id: string): Peer | undefined {
    return this.peers.get(id);
  }

  /** The instance, known from now on if it was not. */
  seen(id: string): Peer {
    let peer = this.peers.get(id);
    if (!peer) {
      peer = new Peer(id, this.channelOf(id));
      this.peers.set(id, peer);
      if (this.peers.size === 1) this.events.onPeers(true);
      this.events.onJoined(id);
    }
    peer.lastSeen = Date.now();
    return peer;
  }

  forget(peer: Peer): void {
    for (const pattern of peer.patterns) this.interest.remove(pattern, peer);
    peer.patterns.clear();
    this.peers.delete(peer.id);
    if (this.peers.size === 0) this.events.onPeers(false);
    this.events.onLeft(peer.id);
  }

  /** Forgets the instances silent since before `silentSince`; returns their ids. */
  forgetSilent(silentSince: number): string[] {
    const silent = [...this.peers.values()].filter((peer) => peer.lastSeen < silentSince);
    for (const peer of silent) this.forget(peer);
    return silent.map((peer) => peer.id);
  }

  replacePatterns(peer: Peer, patterns: string[]): void {
    const next = new Set(patterns);
    for (const pattern of peer.patterns) if (!next.has(pattern)) this.removePattern(peer, pattern);
    for (const pattern of next) this.addPattern(peer, pattern);
  }

  /** A pattern another instance announced; one that is not valid here is ignored. */
  addPattern(peer: Peer, pattern: string): void {
    if (peer.patterns.has(pattern) || !isValidPattern(pattern)) return;
    peer.patterns.add(pattern);
    this.interest.add(pattern, peer);
  }

  removePattern(peer: Peer, pattern: string): void {
    if (!peer.patterns.delete(pattern)) return;
    this.interest.remove(pattern, peer);
  }
}
