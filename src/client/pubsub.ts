import type { BusEvent } from '../bus/protocol.js';
import { isValidPattern, isValidTopic, patternMatches } from '../bus/topic.js';
import { isObject, quiet, rejected, type Transport } from './transport.js';
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
  private readonly requests = new Map<string, PendingRequest>();
  private inbox: string | null = null;
  private inboxReady: Promise<void> | null = null;

  constructor(
    private readonly transport: Transport,
    private readonly requestTimeoutMs: number,
    private readonly report: (err: unknown) => void,
  ) {}

  subscribe(pattern: string, handler: EventHandler): Promise<void> {
    if (!isValidPattern(pattern)) {
      return rejected(new BrokerError('INVALID_TOPIC', `invalid pattern: ${JSON.stringify(pattern)}`));
    }
    let handlers = this.subscriptions.get(pattern);
    if (handlers) {
      handlers.add(handler);
      return Promise.resolve();
    }
    handlers = new Set([handler]);
    this.subscriptions.set(pattern, handlers);
    this.confirming.add(pattern);
    return quiet(this.transport.call({ action: 'subscribe', topic: pattern }, true).then(() => {
      this.confirming.delete(pattern);
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

  private restoreSubscription(pattern: string): void {
    // Confirming too: dropped before its receipt, this frame is the one sent again.
    this.confirming.add(pattern);
    void this.transport.call({ action: 'subscribe', topic: pattern }, true).then(() => {
      this.confirming.delete(pattern);
    }, (err: BrokerError) => {
      this.confirming.delete(pattern);
      if (err.code === 'CLOSED' || err.code === 'DISCONNECTED' || err.code === 'TIMEOUT') return;
      this.subscriptions.delete(pattern);
      this.report(new BrokerError(err.code, `could not restore the subscription to ${pattern}: ${err.message}`));
    });
  }

  publish(type: string, payload: unknown, options: PublishOptions & { confirm: false }): Promise<{ delivered: null }>;
  publish(type: string, payload?: unknown, options?: PublishOptions): Promise<{ delivered: number }>;
  publish(type: string, payload?: unknown, options: PublishOptions = {}): Promise<{ delivered: number | null }> {
    if (!isValidTopic(type)) return rejected(new BrokerError('INVALID_TOPIC', `invalid topic: ${JSON.stringify(type)}`));
    const { confirm = true, ...fields } = options;
    const message = { type, payload: payload === undefined ? null : payload, ...fields };
    if (!confirm) return quiet(this.transport.send({ action: 'publish', message }).then(() => ({ delivered: null })));
    return quiet(this.transport.call({ action: 'publish', message }).then((receipt) => ({
      delivered: typeof receipt.delivered === 'number' ? receipt.delivered : 0,
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
        .then(() => this.publish(type, payload, { replyTo: inbox.topic, correlationId }))
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
    });
  }

  /** close(): every request waiting for its reply fails. */
  closing(err: BrokerError): void {
    for (const request of this.requests.values()) {
      clearTimeout(request.timer);
      request.reject(err);
    }
    this.requests.clear();
  }

  private ensureInbox(): { topic: string; ready: Promise<void> } {
    if (!this.inbox) this.inbox = `_inbox.${uniqueId()}`;
    const topic = this.inbox;
    if (!this.inboxReady) {
      this.inboxReady = quiet(this.subscribe(topic, (event) => {
        const key = event.correlationId === undefined ? undefined : String(event.correlationId);
        const request = key === undefined ? undefined : this.requests.get(key);
        if (!request || key === undefined) return;
        this.requests.delete(key);
        clearTimeout(request.timer);
        request.resolve(event);
      }).catch((err: unknown) => {
        this.inboxReady = null;
        throw err;
      }));
    }
    return { topic, ready: this.inboxReady };
  }

  dispatch(event: unknown): void {
    if (!isObject(event) || typeof event.type !== 'string') return;
    const seen = new Set<EventHandler>();
    for (const [pattern, handlers] of this.subscriptions) {
      if (!patternMatches(pattern, event.type)) continue;
      for (const handler of handlers) {
        if (seen.has(handler)) continue;
        seen.add(handler);
        invoke(handler, event as unknown as BusEvent, this.report);
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
