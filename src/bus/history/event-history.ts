import type { BusConnection } from '../bus-connection.js';
import type { HistoryPort } from '../bus-publisher.js';
import type { BusRouter } from '../bus-router.js';
import { ANSWERED, type ActionOutcome, type BusLogger } from '../frame-dispatcher.js';
import { BusError, type BusEvent, type ClientFrame } from '../protocol.js';
import { patternMatches } from '../topic.js';
import { compareOffsets, parseOffset, retainedFrame } from './offsets.js';
import type { Kept } from './publish-order.js';
import { ReplayedFloors, ReplayHold } from './replay-hold.js';
import type { RetentionRules } from './retention-rules.js';
import type { StoredEvent, StreamStore } from './stream-store.js';

/** Most events `last` may ask for. */
export const MAX_LAST = 10_000;
/** What `GET /bus/history` returns when it is given neither `since` nor `last`. */
export const DEFAULT_HTTP_LAST = 100;
const PAGE = 1000;

/** Where a read of history starts: after an offset, or the last N events. */
export type HistoryStart = { since: string } | { last: number };

export interface HistoryRead {
  /** Matching events, oldest first. */
  events: StoredEvent[];
  /** The newest offset of the rule when the read started ('0' when it has none). */
  offset: string;
  /** Events that were asked for had already been trimmed. */
  gap: boolean;
}

/**
 * Retained topics on the bus: what the publisher has stored before it
 * delivers, msgId deduplication, and the replays of `subscribe` with
 * `since`/`last` and `GET /bus/history`.
 */
export class EventHistory implements HistoryPort {
  private failureLogged = false;

  constructor(
    readonly rules: RetentionRules,
    private readonly store: StreamStore,
    private readonly router: BusRouter,
    private readonly log: BusLogger,
    private readonly maxHoldBytes: number,
  ) {}

  keep({ type, msgId }: BusEvent, json: string): Kept {
    const rule = this.rules.ruleOf(type);
    if (rule < 0 && msgId === undefined) return '';
    let kept: Promise<string | null>;
    if (rule < 0) kept = this.store.claim(type, msgId as string).then((first) => (first ? '' : null));
    else kept = this.store.append(rule, type, json, msgId);
    return kept.catch((err: unknown) => {
      if (!this.failureLogged) {
        this.failureLogged = true;
        this.log.warn({ err: (err as Error).message, type }, 'history: redis unreachable, retained and msgId events are refused (UNAVAILABLE) until it is back');
        setTimeout(() => { this.failureLogged = false; }, 10_000).unref();
      }
      throw err;
    });
  }

  /**
   * Checks a resume request: `since` (an offset) or `last` (0 to 10,000),
   * on a pattern one rule covers entirely. Throws INVALID_FRAME or
   * NOT_RETAINED; returns the rule and where to start.
   */
  startOf(pattern: string, since: unknown, last: unknown): { rule: number; start: HistoryStart } {
    if (since !== undefined && last !== undefined) throw new BusError('INVALID_FRAME', 'give since or last, not both');
    let start: HistoryStart;
    if (since !== undefined) {
      const offset = parseOffset(since);
      if (offset === null) throw new BusError('INVALID_FRAME', `since must be an offset (a string such as "1733100000000-0", or "0" for everything): ${JSON.stringify(since)?.slice(0, 60)}`);
      start = { since: offset };
    } else {
      if (typeof last !== 'number' || !Number.isInteger(last) || last < 0 || last > MAX_LAST) {
        throw new BusError('INVALID_FRAME', `last must be a whole number from 0 to ${MAX_LAST}`);
      }
      start = { last };
    }
    const rule = this.rules.ruleCovering(pattern);
    if (rule < 0) throw new BusError('NOT_RETAINED', `${pattern} is not retained: no history rule covers all of it`);
    return { rule, start };
  }

  /** Reads a rule's matching events from `start` up to its newest now. */
  async read(rule: number, pattern: string, start: HistoryStart): Promise<HistoryRead> {
    const state = await this.store.state(rule);
    const upTo = state.lastOffset;
    const offset = upTo === '0-0' ? '0' : upTo;
    const matching = (event: StoredEvent) => patternMatches(pattern, event.type);
    if ('since' in start) {
      const events: StoredEvent[] = [];
      let after = start.since;
      // Nothing is newer than the newest (and Redis refuses a range past the largest id).
      while (compareOffsets(after, upTo) < 0) {
        const page = await this.store.range(rule, after, upTo, PAGE);
        for (const event of page) if (matching(event)) events.push(event);
        if (page.length < PAGE) break;
        after = (page[page.length - 1] as StoredEvent).offset;
      }
      // MAXLEN trimming leaves no trace but the stream's first entry (stack-facts).
      const oldest = state.firstOffset ?? upTo;
      const gap = state.trimmed && compareOffsets(start.since, oldest) < 0;
      return { events, offset, gap };
    }
    const newestFirst: StoredEvent[] = [];
    let before = upTo;
    while (newestFirst.length < start.last && upTo !== '0-0') {
      const page = await this.store.reverseRange(rule, before, PAGE);
      for (const event of page) {
        if (matching(event) && newestFirst.length < start.last) newestFirst.push(event);
      }
      if (page.length < PAGE) break;
      before = `(${(page[page.length - 1] as StoredEvent).offset}`;
    }
    return { events: newestFirst.reverse(), offset, gap: state.trimmed && newestFirst.length < start.last };
  }

  /**
   * `subscribe` with `since` or `last`. The subscription is live from the
   * start, but its connection's live events are held while the history is
   * read and sent; then the held ones the replay covered (offset up to the
   * newest read) are dropped and the rest follow, and so is any late copy
   * of a replayed event (ReplayedFloors). Replay, receipt, live: no gap, no
   * duplicate, in offset order.
   */
  async resume(connection: BusConnection, pattern: string, frame: ClientFrame): Promise<ActionOutcome> {
    const { rule, start } = this.startOf(pattern, frame.since, frame.last);
    const send = (data: Buffer) => { this.router.deliver(connection, data); };
    const hold = ReplayHold.begin(connection, this.maxHoldBytes);
    let added = false;
    let read: HistoryRead;
    try {
      // Other gateways send every retained event here whatever their view of
      // this one's interest (RemoteBus.forwardToAll): no need to wait for it.
      added = this.router.subscribe(connection, pattern);
      read = await this.read(rule, pattern, start);
    } catch (err) {
      if (added) this.router.unsubscribe(connection, pattern);
      const unwanted = (type: string) => patternMatches(pattern, type) && ![...connection.patterns].some((p) => patternMatches(p, type));
      hold.release(unwanted, send);
      throw err;
    }
    for (const event of read.events) send(retainedFrame(event.json, event.offset));
    if (frame.id !== undefined) {
      connection.send({ ok: true, id: frame.id, offset: read.offset, replayed: read.events.length, gap: read.gap });
    }
    const floors = connection.replayed ??= new ReplayedFloors();
    floors.set(pattern, read.offset === '0' ? '0-0' : read.offset);
    hold.release((type, held) => floors.covers(type, held), send);
    return ANSWERED;
  }
}
