import type { Redis } from 'ioredis';
import { BusError } from '../protocol.js';
import type { BusLogger } from '../frame-dispatcher.js';
import type { RetentionRule } from './retention-rules.js';

/** One retained event as read back: its offset, type and stored JSON (without the offset). */
export interface StoredEvent {
  offset: string;
  type: string;
  json: string;
}

/** A rule's stream, as a replay needs it. */
export interface StreamState {
  /** Newest offset ever given in the stream (`0-0` when none). */
  lastOffset: string;
  /** Oldest entry still there, or null when the stream is empty. */
  firstOffset: string | null;
  /** Entries were trimmed (by count or age) at some point. */
  trimmed: boolean;
}

/** How long a `msgId` is remembered per topic. */
export const DEDUP_WINDOW_MS = 120_000;

/**
 * Appends a batch of events to one stream, in order: ARGV = window ms,
 * MAXLEN, then (type, json, msgId key or '') per event. An event whose msgId
 * key is already set is skipped (0 in its place); the others get their id.
 * The msgId keys are not declared in KEYS: fine on a single Redis, which is
 * what the gateway runs on (not Redis Cluster).
 */
const APPEND_BATCH = `
local ids = {}
local n = 0
for i = 3, #ARGV, 3 do
  n = n + 1
  local dedup = ARGV[i + 2]
  if dedup == '' or redis.call('SET', dedup, '1', 'NX', 'PX', ARGV[1]) then
    ids[n] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 't', ARGV[i], 'e', ARGV[i + 1])
  else
    ids[n] = 0
  end
end
return ids`;

const MAX_BATCH = 256;

interface Waiter {
  resolve(offset: string | null): void;
  reject(err: unknown): void;
}

/** The appends to one stream made in one tick: they leave as one script call. */
interface Batch {
  args: (string | Buffer)[];
  waiters: Waiter[];
}

type Fields = string[];
type Entry = [string, Fields];

interface WithAppendBatch {
  historyAppendBatch(streamKey: string, windowMs: number, maxLen: number, ...entries: (string | Buffer)[]): Promise<(string | number)[]>;
}

function toStored([offset, fields]: Entry): StoredEvent {
  let type = '';
  let json = 'null';
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 't') type = fields[i + 1] as string;
    else if (fields[i] === 'e') json = fields[i + 1] as string;
  }
  return { offset, type, json };
}

const unavailable = (err: unknown): never => {
  throw new BusError('UNAVAILABLE', `history store unreachable: ${(err as Error).message}`);
};

/**
 * Retained events in Redis Streams, one stream per rule
 * (`<prefix>:history:<topics>`), trimmed by count on every append
 * (`MAXLEN ~`) and by age on a timer (`MINID ~`). Everything Redis-specific
 * about history is here. Every gateway on the Redis shares the streams;
 * with AOF on, they survive a restart of Redis.
 */
export class StreamStore {
  private readonly keys: string[];
  private readonly redis: Redis & WithAppendBatch;
  /** Per rule, the appends of this tick not yet sent. */
  private readonly batches: (Batch | null)[];
  private ageTimer: NodeJS.Timeout | null = null;

  constructor(redis: Redis, private readonly prefix: string, private readonly rules: readonly RetentionRule[], private readonly log: BusLogger) {
    redis.defineCommand('historyAppendBatch', { numberOfKeys: 1, lua: APPEND_BATCH });
    this.redis = redis as Redis & WithAppendBatch;
    this.keys = rules.map((rule) => `${prefix}:history:${rule.topics}`);
    this.batches = rules.map(() => null);
  }

  keyOf(rule: number): string {
    return this.keys[rule] as string;
  }

  /**
   * Stores one event of a rule; resolves its offset, or null when `msgId`
   * was already seen on its topic within the window (then nothing is
   * stored). The appends of one tick (a publisher's burst) leave as one
   * script call per rule, in the order they were made: one round trip and
   * one command for the lot, instead of one each.
   */
  append(rule: number, type: string, json: Buffer | string, msgId?: string): Promise<string | null> {
    let batch = this.batches[rule];
    if (!batch) {
      batch = { args: [], waiters: [] };
      this.batches[rule] = batch;
      queueMicrotask(() => this.flush(rule));
    }
    batch.args.push(type, json, msgId === undefined ? '' : this.dedupKey(type, msgId));
    const stored = new Promise<string | null>((resolve, reject) => {
      (batch as Batch).waiters.push({ resolve, reject });
    });
    // A script blocks Redis while it runs: keep each one short.
    if (batch.waiters.length >= MAX_BATCH) this.flush(rule);
    return stored;
  }

  private flush(rule: number): void {
    const batch = this.batches[rule];
    if (!batch) return;
    this.batches[rule] = null;
    const { maxEvents } = this.rules[rule] as RetentionRule;
    this.redis.historyAppendBatch(this.keyOf(rule), DEDUP_WINDOW_MS, maxEvents, ...batch.args).then((ids) => {
      batch.waiters.forEach((waiter, i) => {
        const id = ids[i];
        waiter.resolve(typeof id === 'string' ? id : null);
      });
    }, (err: unknown) => {
      const refusal = new BusError('UNAVAILABLE', `history store unreachable: ${(err as Error).message}`);
      for (const waiter of batch.waiters) waiter.reject(refusal);
    });
  }

  /** Claims a msgId on a topic nothing retains: true the first time within the window. */
  claim(type: string, msgId: string): Promise<boolean> {
    return this.redis.set(this.dedupKey(type, msgId), '1', 'PX', DEDUP_WINDOW_MS, 'NX')
      .then((reply) => reply === 'OK', unavailable);
  }

  /** Entries after `after` (exclusive) up to `upTo` (inclusive), oldest first. */
  async range(rule: number, after: string, upTo: string, count: number): Promise<StoredEvent[]> {
    const entries = await (this.redis.xrange(this.keyOf(rule), `(${after}`, upTo, 'COUNT', count) as Promise<Entry[]>).catch(unavailable);
    return entries.map(toStored);
  }

  /** Entries up to `upTo` (`(id` exclusive, or inclusive), newest first. */
  async reverseRange(rule: number, upTo: string, count: number): Promise<StoredEvent[]> {
    const entries = await (this.redis.xrevrange(this.keyOf(rule), upTo, '-', 'COUNT', count) as Promise<Entry[]>).catch(unavailable);
    return entries.map(toStored);
  }

  async state(rule: number): Promise<StreamState> {
    // XINFO STREAM errors on a missing key; a pipeline reads the same facts on any key.
    const replies = await this.redis.multi()
      .xlen(this.keyOf(rule))
      .xrange(this.keyOf(rule), '-', '+', 'COUNT', 1)
      .xinfo('STREAM', this.keyOf(rule))
      .exec()
      .catch(unavailable);
    const [lenReply, firstReply, infoReply] = replies ?? [];
    const length = Number(lenReply?.[1] ?? 0);
    const first = (firstReply?.[1] as Entry[] | undefined)?.[0];
    if (infoReply?.[0]) return { lastOffset: '0-0', firstOffset: null, trimmed: false };
    const info = infoReply?.[1] as (string | number | unknown[])[];
    const field = (name: string) => info[info.indexOf(name) + 1];
    return {
      lastOffset: String(field('last-generated-id')),
      firstOffset: first ? first[0] : null,
      trimmed: Number(field('entries-added')) > length,
    };
  }

  /** Trims the rules with a maximum age now and then (approximately: whole stream nodes). */
  startAgeTrim(intervalMs: number): void {
    const aged = this.rules.map((rule, index) => ({ rule, index })).filter(({ rule }) => rule.maxAgeSeconds !== null);
    if (aged.length === 0) return;
    this.ageTimer = setInterval(() => {
      const now = Date.now();
      for (const { rule, index } of aged) {
        const minId = `${now - (rule.maxAgeSeconds as number) * 1000}-0`;
        this.redis.xtrim(this.keyOf(index), 'MINID', '~', minId).catch((err: unknown) => {
          this.log.debug({ err: (err as Error).message, topics: rule.topics }, 'history: age trim failed');
        });
      }
    }, intervalMs);
    this.ageTimer.unref();
  }

  stop(): void {
    if (this.ageTimer) clearInterval(this.ageTimer);
  }

  private dedupKey(type: string, msgId: string): string {
    return `${this.prefix}:msgid:${type}:${msgId}`;
  }
}
