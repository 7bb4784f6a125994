import type { BusConnection } from './bus-connection.js';

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

/** At most this many patterns are listed per connection, and in `subscriptions`: the answer stays bounded. */
export const MAX_LISTED_PATTERNS = 1000;

export interface BusPage {
  offset?: number;
  limit?: number;
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

type ConnectionView = BusDescription['connections'][number];

/** One connection as `GET /bus` lists it. */
export function connectionView(c: BusConnection, now: number): ConnectionView {
  return {
    clientId: c.id,
    name: c.name,
    remoteAddress: c.remoteAddress,
    connectedAt: new Date(c.connectedAt).toISOString(),
    ageMs: now - c.connectedAt,
    subscriptions: firstOf(c.patterns, MAX_LISTED_PATTERNS),
    subscriptionCount: c.patterns.size,
    framesIn: c.framesIn,
    framesOut: c.framesOut,
  };
}

/** The first `max` of `items`: a listing stays bounded. */
export function firstOf(items: Iterable<string>, max: number): string[] {
  const first: string[] = [];
  for (const item of items) {
    if (first.length >= max) break;
    first.push(item);
  }
  return first;
}
