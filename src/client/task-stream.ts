import { isObject, type Transport } from './transport.js';
import { BrokerError } from './types.js';

/** One item of a followed stream (bus protocol v3). */
export interface StreamChunk {
  taskId: string;
  seq: number;
  /** The attempt that wrote it (a retried task continues the same seq). */
  attempt?: number;
  /** The chunk's JSON data, or its bytes (Uint8Array) for a binary chunk. */
  data?: unknown;
  /** Only on the last item: how the task ended. */
  end?: 'ok' | 'failed' | 'cancelled';
  /** With `end: "ok"`: the task's result. */
  result?: unknown;
  /** The chunks before `seq` are no longer kept. */
  gap?: true;
  /** The task's trace context (its enqueue's `traceparent`), on every item of a traced task's stream. */
  traceparent?: string;
}

export interface FollowOptions {
  /** The first seq to get (default 1: the whole stream). */
  from?: number;
}

/** Codes after which a follow is sent again on the next connection instead of failing. */
const RESENT = new Set(['DISCONNECTED']);

class Follow {
  readonly items: StreamChunk[] = [];
  waiter: (() => void) | null = null;
  failure: Error | null = null;
  ended = false;
  /** Sent on the first frame of each follow of a traced task. */
  traceparent: string | undefined;

  constructor(readonly taskId: string, public next: number) {}

  push(item: StreamChunk): void {
    this.items.push(item);
    this.wake();
  }

  fail(err: Error): void {
    this.failure = err;
    this.wake();
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.();
  }
}

/**
 * Follows of task streams: one per task, sent again on every new
 * connection from the seq after the last one delivered, so a reconnect
 * neither loses nor repeats a chunk (a repeat the gateway sends while the
 * follow is replaced is dropped here by its seq).
 */
export class StreamFollows {
  private readonly follows = new Map<string, Follow>();

  constructor(private readonly transport: Transport) {}

  follow(taskId: string, options: FollowOptions = {}): AsyncIterableIterator<StreamChunk> {
    const from = options.from ?? 1;
    if (!Number.isSafeInteger(from) || from < 1) throw new BrokerError('INVALID_FRAME', `from must be a whole number from 1, not ${from}`);
    if (this.follows.has(taskId)) throw new BrokerError('INVALID_FRAME', `task ${taskId} is already followed by this client`);
    const follow = new Follow(taskId, from);
    this.follows.set(taskId, follow);
    this.send(follow);
    return this.iterate(follow);
  }

  /** A new connection: every follow goes again from where it got to. */
  restore(): void {
    for (const follow of this.follows.values()) this.send(follow);
  }

  receive(raw: unknown, bytes?: Uint8Array): void {
    if (!isObject(raw) || typeof raw.seq !== 'number') return;
    const follow = this.follows.get(String(raw.taskId));
    if (!follow || follow.ended || raw.seq < follow.next) return;
    if (typeof raw.traceparent === 'string') follow.traceparent = raw.traceparent;
    const item: StreamChunk = { taskId: follow.taskId, seq: raw.seq };
    if (follow.traceparent !== undefined) item.traceparent = follow.traceparent;
    if (raw.gap === true) {
      item.gap = true;
      follow.next = raw.seq;
      follow.push(item);
      return;
    }
    if (typeof raw.attempt === 'number') item.attempt = raw.attempt;
    if (typeof raw.end === 'string') {
      item.end = raw.end as StreamChunk['end'];
      if ('result' in raw) item.result = raw.result;
      follow.ended = true;
    } else {
      item.data = bytes ?? raw.data;
    }
    follow.next = raw.seq + 1;
    follow.push(item);
  }

  closing(err: BrokerError): void {
    for (const follow of this.follows.values()) follow.fail(err);
  }

  private send(follow: Follow): void {
    this.transport.call({ action: 'follow', taskId: follow.taskId, from: follow.next }).catch((err: unknown) => {
      if (err instanceof BrokerError && RESENT.has(err.code)) return;
      follow.fail(err instanceof Error ? err : new Error(String(err)));
    });
  }

  private async *iterate(follow: Follow): AsyncIterableIterator<StreamChunk> {
    try {
      for (;;) {
        const item = follow.items.shift();
        if (item) {
          yield item;
          if (item.end !== undefined) return;
          continue;
        }
        if (follow.failure) throw follow.failure;
        await new Promise<void>((resolve) => {
          follow.waiter = resolve;
        });
      }
    } finally {
      this.follows.delete(follow.taskId);
      if (!follow.ended && !follow.failure) this.transport.sendNow({ action: 'unfollow', taskId: follow.taskId });
    }
  }
}
