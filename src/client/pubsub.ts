import type { BusEvent } from '../bus/protocol.js';
import { isValidPattern, isValidTopic, patternMatches } from '../bus/topic.js';
import { isName, MAX_MSG_ID_BYTES } from '../protocol/names.js';
import { isObject, quiet, rejected, type Transport } from './transport.js';
import { outgoingTraceparent, runInTrace } from './trace.js';
import { BrokerError } from './types.js';

export type EventHandler = (event: BusEvent) => unknown;

/** Fields of the published message besides `type` and `payload` (the seed's `opts`). */
export interface PublishOptions {
  /** `false`: send without asking for a receipt (resolves once sent or buffered; `delivered` is null). */
  confirm?: boolean;
  source?: string;
  timestamp?: string;
  correlationId?: string | number;
  replyTo?: string;
  /** Dedup key: a second publish of it counts once (`duplicate: true`). Publishes buffered while disconnected get one. */
  msgId?: string;
  /** W3C trace context; default: a child of the event or task being handled, else a new trace. */
  traceparent?: string;
}

/** Where a subscription starts on a retained topic (`since`: an offset, `"0"` for all; `last`: the last N). */
export interface SubscribeOptions {
  since?: string;
  last?: number;
}

/** The subscribe receipt on a retained topic: the newest offset at that moment, events replayed, whether some were trimmed. */
export interface SubscribeResult {
  offset?: string;
  replayed?: number;
  gap?: boolean;
}

/** Offsets are "MS-SEQ": compared as numbers, never as strings ("9-0" < "10-0"). */
export function compareOffsets(a: string, b: string): number {
  const [aMs = NaN, aSeq = 0] = a.split('-').map(Number);
  const [bMs = NaN, bSeq = 0] = b.split('-').map(Number);
  if (Number.isNaN(aMs) || Number.isNaN(bMs)) return a === b ? 0 : 1;
  return aMs - bMs || aSeq - bSeq;
}

function resumeInfo(receipt: Record<string, unknown>): SubscribeResult {
  const result: SubscribeResult = {};
  if (typeof receipt.offset === 'string') result.offset = receipt.offset;
  if (typeof receipt.replayed === 'number') result.replayed = receipt.replayed;
  if (typeof receipt.gap === 'boolean') result.gap = receipt.gap;
  return result;
}

interface PendingRequest {
  resolve(event: BusEvent): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

function noop(): void {}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}

/** A unique id; crypto.randomUUID is missing on plain-HTTP pages, so fall back. */
export function uniqueId(): string {
  const crypto = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (typeof crypto?.randomUUID === 'function') return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}-${Math.random().toString(36).slice(2, 12)}`;
}

/**
 * The pub/sub layer: subscriptions (restored on every connection),
 * publishing, and request/reply over a private inbox topic.
 */
export class PubSub {
  private readonly subscriptions = new Map<string, Set<EventHandler>>();
  /** Patterns whose subscribe awaits its receipt: the transport sends that frame again after a drop, so restore() does not. */
  private readonly confirming = new Set<string>();
  /** Per pattern whose events carry offsets: the newest one handed to its handlers (resume point after a reconnect). */
  private readonly offsets = new Map<string, string>();
  private readonly requests = new Map<string, PendingRequest>();
  private inbox: string | null = null;
  private inboxReady: Promise<void> | null = null;

  constructor(
    private readonly transport: Transport,
    private readonly requestTimeoutMs: number,
    private readonly report: (err: unknown) => void,
  ) {}

  subscribe(pattern: string, handler: EventHandler, options: SubscribeOptions = {}): Promise<SubscribeResult> {
    if (!isValidPattern(pattern)) {
      return rejected(new BrokerError('INVALID_TOPIC', `invalid pattern: ${JSON.stringify(pattern)}`));
    }
    let handlers = this.subscriptions.get(pattern);
    if (handlers) {
      handlers.add(handler);
      return Promise.resolve({});
    }
    handlers = new Set([handler]);
    this.subscriptions.set(pattern, handlers);
    this.confirming.add(pattern);
    const frame: Record<string, unknown> & { action: string } = { action: 'subscribe', topic: pattern };
    if (options.since !== undefined) frame.since = options.since;
    if (options.last !== undefined) frame.last = options.last;
    return quiet(this.transport.call(frame, true).then((receipt) => {
      this.confirming.delete(pattern);
      this.keepOffset(pattern, receipt.offset);
      return resumeInfo(receipt);
    }, (err: BrokerError) => {
      this.confirming.delete(pattern);
      if (err.code !== 'CLOSED' && this.subscriptions.get(pattern) === handlers) this.subscriptions.delete(pattern);
      throw err;
    }));
  }

  unsubscribe(pattern: string, handler?: EventHandler): Promise<void> {
    const handlers = this.subscriptions.get(pattern);
    if (!handlers) return Promise.resolve();
    if (handler) handlers.delete(handler);
    if (handler && handlers.size > 0) return Promise.resolve();
    this.subscriptions.delete(pattern);
    this.offsets.delete(pattern);
    // Disconnected: the next connection simply does not subscribe it, unless a subscribe of it still waits to go out.
    if (!this.transport.isOpen && !this.confirming.has(pattern)) return Promise.resolve();
    return quiet(this.transport.call({ action: 'unsubscribe', topic: pattern }, true).then(noop));
  }

  /** A new connection: subscribe to every pattern again. */
  restore(): void {
    for (const pattern of this.subscriptions.keys()) {
      if (!this.confirming.has(pattern)) this.restoreSubscription(pattern);
    }
  }

  /** Resumes from the kept offset (`since`): what was published meanwhile is replayed, nothing twice. */
  private restoreSubscription(pattern: string): void {
    // Confirming too: dropped before its receipt, this frame is the one sent again.
    this.confirming.add(pattern);
    const since = this.offsets.get(pattern);
    const frame = since === undefined ? { action: 'subscribe', topic: pattern } : { action: 'subscribe', topic: pattern, since };
    void this.transport.call(frame, true).then((receipt) => {
      this.confirming.delete(pattern);
      this.keepOffset(pattern, receipt.offset);
    }, (err: BrokerError) => {
      this.confirming.delete(pattern);
      if (err.code === 'CLOSED' || err.code === 'DISCONNECTED' || err.code === 'TIMEOUT') return;
      if (err.code === 'NOT_RETAINED' && since !== undefined && this.subscriptions.has(pattern)) {
        // No longer retained (the rules changed): subscribe plainly, and stop tracking.
        this.offsets.delete(pattern);
        this.restoreSubscription(pattern);
        return;
      }
      this.subscriptions.delete(pattern);
      this.report(new BrokerError(err.code, `could not restore the subscription to ${pattern}: ${err.message}`));
    });
  }

  publish(type: string, payload: unknown, options: PublishOptions & { confirm: false }): Promise<{ delivered: null }>;
  publish(type: string, payload?: unknown, options?: PublishOptions): Promise<{ delivered: number; duplicate?: true }>;
  publish(type: string, payload?: unknown, options: PublishOptions = {}): Promise<{ delivered: number | null; duplicate?: true }> {
    if (!isValidTopic(type)) return rejected(new BrokerError('INVALID_TOPIC', `invalid topic: ${JSON.stringify(type)}`));
    const { confirm = true, ...fields } = options;
    if (fields.msgId !== undefined && !isName(fields.msgId, MAX_MSG_ID_BYTES)) {
      return rejected(new BrokerError('INVALID_FRAME', `msgId must be a name of 1 to ${MAX_MSG_ID_BYTES} UTF-8 bytes without control characters: ${JSON.stringify(fields.msgId)}`));
    }
    const message: Record<string, unknown> = { type, payload: payload === undefined ? null : payload, ...fields };
    message.traceparent = outgoingTraceparent(fields.traceparent);
    // Buffered while disconnected: a msgId makes the resend after a reconnect count once.
    if (message.msgId === undefined && !this.transport.isOpen) message.msgId = uniqueId();
    if (!confirm) return quiet(this.transport.send({ action: 'publish', message }).then(() => ({ delivered: null })));
    // With a msgId, a publish in flight when the connection drops is sent again: the gateway keeps one.
    return quiet(this.transport.call({ action: 'publish', message }, message.msgId !== undefined).then((receipt) => ({
      delivered: typeof receipt.delivered === 'number' ? receipt.delivered : 0,
      ...(receipt.duplicate === true ? { duplicate: true } : {}),
    })));
  }

  request(type: string, payload?: unknown, options: { timeout?: number } = {}): Promise<BusEvent> {
    if (!isValidTopic(type)) return rejected(new BrokerError('INVALID_TOPIC', `invalid topic: ${JSON.stringify(type)}`));
    const timeoutMs = options.timeout ?? this.requestTimeoutMs;
    const correlationId = uniqueId();
    const inbox = this.ensureInbox();
    return quiet(new Promise<BusEvent>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.requests.delete(correlationId);
        reject(new BrokerError('TIMEOUT', `no reply to ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      const fail = (err: Error) => {
        if (!this.requests.delete(correlationId)) return;
        clearTimeout(timer);
        reject(err);
      };
      this.requests.set(correlationId, { resolve, reject, timer });
      inbox.ready
        // A msgId: a request in flight when the connection drops is sent again, and waits on to its timeout.
        .then(() => this.publish(type, payload, { replyTo: inbox.topic, correlationId, msgId: correlationId }))
        .catch(fail);
    }));
  }

  reply(event: BusEvent, payload?: unknown): Promise<{ delivered: number }> {
    if (!event.replyTo) return rejected(new BrokerError('INVALID_FRAME', `event ${event.type} has no replyTo`));
    const options: PublishOptions = event.correlationId === undefined ? {} : { correlationId: event.correlationId };
    return this.publish(event.replyTo, payload, options);
  }

  respond(pattern: string, handler: (event: BusEvent) => unknown): Promise<void> {
    return this.subscribe(pattern, async (event) => {
      const result = await handler(event);
      if (event.replyTo) await this.reply(event, result);
    }).then(noop);
  }

  /** close(): every request waiting for its reply fails. */
  closing(err: BrokerError): void {
    for (const request of this.requests.values()) {
      clearTimeout(request.timer);
      request.reject(err);
    }
    this.requests.clear();
  }

  private keepOffset(pattern: string, offset: unknown): void {
    if (typeof offset !== 'string' || !this.subscriptions.has(pattern)) return;
    const kept = this.offsets.get(pattern);
    if (kept === undefined || compareOffsets(offset, kept) > 0) this.offsets.set(pattern, offset);
  }

  private ensureInbox(): { topic: string; ready: Promise<void> } {
    if (!this.inbox) this.inbox = `_inbox.${uniqueId()}`;
    const topic = this.inbox;
    if (!this.inboxReady) {
      const onReply = (event: BusEvent) => {
        const key = event.correlationId === undefined ? undefined : String(event.correlationId);
        const request = key === undefined ? undefined : this.requests.get(key);
        if (!request || key === undefined) return;
        this.requests.delete(key);
        clearTimeout(request.timer);
        request.resolve(event);
      };
      // From "0" (a new inbox has nothing yet): the receipt's offset is where a
      // reconnect resumes, so a reply published meanwhile still arrives.
      // Inboxes not retained (NOT_RETAINED): a plain subscription.
      this.inboxReady = quiet(this.subscribe(topic, onReply, { since: '0' }).catch((err: unknown) => {
        if (err instanceof BrokerError && err.code === 'NOT_RETAINED') return this.subscribe(topic, onReply);
        throw err;
      }).then(noop, (err: unknown) => {
        this.inboxReady = null;
        throw err;
      }));
    }
    return { topic, ready: this.inboxReady };
  }

  dispatch(event: unknown): void {
    if (!isObject(event) || typeof event.type !== 'string') return;
    const seen = new Set<EventHandler>();
    const offset = typeof event.offset === 'string' ? event.offset : undefined;
    for (const [pattern, handlers] of this.subscriptions) {
      if (!patternMatches(pattern, event.type)) continue;
      if (offset !== undefined) {
        // At or below the kept offset: a replay overlapping what this pattern already handed out.
        const kept = this.offsets.get(pattern);
        if (kept !== undefined && compareOffsets(offset, kept) <= 0) continue;
        this.offsets.set(pattern, offset);
      }
      for (const handler of handlers) {
        if (seen.has(handler)) continue;
        seen.add(handler);
        runInTrace(event.traceparent, () => invoke(handler, event as unknown as BusEvent, this.report));
      }
    }
  }
}

/** Calls a handler; what it throws or rejects goes to `report`, never to the socket loop. */
export function invoke<T>(handler: (value: T) => unknown, value: T, report: (err: unknown) => void): void {
  try {
    const result = handler(value);
    if (isThenable(result)) result.then(undefined, report);
  } catch (err) {
    report(err);
  }
}
