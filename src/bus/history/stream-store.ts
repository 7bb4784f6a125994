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

const APPEND_ONCE = `
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 't', ARGV[3], 'e', ARGV[4])
end
return false`;

type Fields = string[];
type Entry = [string, Fields];

interface WithAppendOnce {
  historyAppendOnce(dedupKey: string, streamKey: string, windowMs: number, maxLen: number, type: string, json: string): Promise<string | null>;
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
  private readonly redis: Redis & WithAppendOnce;
  private ageTimer: NodeJS.Timeout | null = null;

  constructor(redis: Redis, private readonly prefix: string, private readonly rules: readonly RetentionRule[], private readonly log: BusLogger) {
    redis.defineCommand('historyAppendOnce', { numberOfKeys: 2, lua: APPEND_ONCE });
    this.redis = redis as Redis & WithAppendOnce;
    this.keys = rules.map((rule) => `${prefix}:history:${rule.topics}`);
  }

  keyOf(rule: number): string {
    return this.keys[rule] as string;
  }

  /** Stores one event of a rule; resolves its offset. */
  append(rule: number, type: string, json: string): Promise<string> {
    const { maxEvents } = this.rules[rule] as RetentionRule;
    return (this.redis.xadd(this.keyOf(rule), 'MAXLEN', '~', maxEvents, '*', 't', type, 'e', json) as Promise<string>)
      .catch(unavailable);
  }

  /** Stores an event unless its msgId was seen on its topic within the window; null when it was. */
  appendOnce(rule: number, type: string, msgId: string, json: string): Promise<string | null> {
    const { maxEvents } = this.rules[rule] as RetentionRule;
    return this.redis.historyAppendOnce(this.dedupKey(type, msgId), this.keyOf(rule), DEDUP_WINDOW_MS, maxEvents, type, json)
      .catch(unavailable);
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
