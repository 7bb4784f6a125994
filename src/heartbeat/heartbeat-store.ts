import type { ProcessMetrics } from './process-metrics.js';

/**
 * One service's record, keyed by pid. The first nine fields are the
 * original service's document (`pid, last, name, sessionId, cpu, memory,
 * netRx, netTx, killedAt`), so the user's existing data and tools still
 * read it; the rest are what makes stopping safe.
 */
export interface HeartbeatRecord extends ProcessMetrics {
  pid: number;
  /** ms since the epoch of the latest beat. */
  last: number;
  name: string;
  /** The gateway boot that received the latest beat. */
  sessionId: string;
  /** Set when the gateway stopped it, or when its session ended. */
  killedAt?: number;
  /** /proc/PID/stat start time at its first local beat; null when unknown. */
  startTime: string | null;
  /** The latest beat came from this machine (loopback). */
  local: boolean;
  /**
   * The pid was proven to hold the socket its latest beat came on (see
   * socket-owner.ts): only such a process is ever signalled, and only its
   * cpu/memory/network are read. Records written before this field: false.
   */
  proven: boolean;
  /** ms since the epoch of the first beat of this process. */
  firstBeat: number;
  /** Set when it went stale and `heartbeat.down` was published. */
  downAt?: number;
}

/** What one accepted beat writes: everything but the down/killed marks, which it clears. */
export type BeatRecord = Omit<HeartbeatRecord, 'killedAt' | 'downAt'>;

/** The store cannot be reached: the caller answers 503. */
export class StoreUnavailableError extends Error {
  constructor(cause: unknown) {
    super(`heartbeat store unavailable: ${(cause as Error)?.message ?? String(cause)}`);
    this.name = 'StoreUnavailableError';
  }
}

/**
 * Where heartbeat records live: MongoDB (the original's store) or Redis.
 * Every method rejects with StoreUnavailableError when the store is down.
 */
export interface HeartbeatStore {
  readonly kind: 'mongo' | 'redis';
  get(pid: number): Promise<HeartbeatRecord | null>;
  /**
   * The original's instance count: this name, this session, beat since
   * `since`, not killed; and proven or from another machine, so that a
   * local beat naming someone else's pid cannot squat a name's limit.
   */
  countLive(name: string, sessionId: string, since: number): Promise<number>;
  /** Upserts by pid; clears `killedAt` and `downAt`. */
  saveBeat(record: BeatRecord): Promise<void>;
  list(): Promise<HeartbeatRecord[]>;
  /** Records whose last beat is before `before` and that were neither reported down nor killed. */
  findStale(before: number): Promise<HeartbeatRecord[]>;
  /**
   * Sets `downAt` only if the record still has this `last` and no `downAt`:
   * false means a beat arrived meanwhile (or another check took it).
   */
  markDown(pid: number, last: number, at: number): Promise<boolean>;
  markKilled(pid: number, at: number): Promise<void>;
  /** Marks every record of the session not yet killed as killed at `at`; returns how many. */
  endSession(sessionId: string, at: number): Promise<number>;
  /** Resolves when the store answers. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Runs a store call, turning any failure into StoreUnavailableError. */
export async function storeCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof StoreUnavailableError) throw err;
    throw new StoreUnavailableError(err);
  }
}
