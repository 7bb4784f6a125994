import type { Redis } from 'ioredis';
import type { BusLogger } from '../bus/frame-dispatcher.js';
import { BusError } from '../bus/protocol.js';
import type { TaskOutcome } from '../queues/task-outcome.js';
import type { GatewaySpan } from '../trace/span-export.js';
import type { StreamSink } from './stream-sink.js';
import type { WindowLimits } from './receipt-window.js';
import { StreamBackpressure } from './stream-backpressure.js';
import { StreamTail } from './stream-tail.js';
import type { StreamEnd, TaskStreamStore } from './task-stream-store.js';

export interface TaskStreamSettings extends WindowLimits {
  /** Bytes of one chunk (STREAM_MAX_BYTES). */
  maxBytes: number;
  /** A follower's unsent bytes past which it reads no more from storage until its socket drains. */
  sinkHighWater: number;
}

/** What the streams report as it happens (the gateway's metrics), one call per chunk: no work that grows with the streams. */
export interface TaskStreamHooks {
  chunkStored(queue: string, bytes: number): void;
  /** A chunk went to a follower `behind` seqs short of the newest this gateway knows stored. */
  chunkSent(behind: number): void;
  /**
   * Present when spans are exported: a traced task's stream (opened → end)
   * and each follow of it here (follow → end or unfollow), as children of
   * the enqueue's traceparent.
   */
  span?(span: GatewaySpan): void;
}

/** What a follow's receipt carries. */
export type FollowReceipt = {
  /** The task's `opts.traceparent`, for the follower's own spans. */
  traceparent?: string;
};

/** The task a chunk names, as its writer's connection holds it. */
export interface HeldTask {
  queue: string;
  attempt: number;
  stream: boolean;
}

/** Entries read from storage at a time for one follower. */
const READ_BATCH = 64;
const READ_RETRY_MS = 1000;
/** A task's last failure for these reasons is its being taken back, not its failing. */
const TAKEN_BACK = new Set(['cancelled', 'timeout', 'heartbeat lapsed']);

class Follower {
  reading = false;
  again = false;
  /** Waiting for its sink to drain: the drain pumps it, nothing else. */
  draining = false;
  done = false;
  /** Entries sent (its follow's span says how many). */
  sent = 0;
  gapSent = false;
  ended = false;
  readonly startedAt = Date.now();
  readonly from: number;
  constructor(readonly owner: string, readonly taskId: string, readonly sink: StreamSink, public next: number, readonly trace?: { queue: string; traceparent: string }) {
    this.from = next;
  }
}

/** What this gateway keeps of a task's stream while someone here follows it. */
interface FollowedStream {
  followers: Set<Follower>;
}

/** The next seq of the stream's slowest follower here (Infinity: none). */
function slowestOf(followed: FollowedStream | undefined): number {
  let slowest = Infinity;
  for (const follower of followed?.followers ?? []) slowest = Math.min(slowest, follower.next);
  return slowest;
}

/**
 * Streamed task output (bus protocol v3): chunks stored by seq in Redis
 * before their receipt, followers that read them from storage at the pace
 * their sockets drain (so none is cut as a slow consumer, and none misses
 * or repeats one), and the writer's receipts held while a follower, here
 * or on another gateway, is more than a window behind (StreamBackpressure).
 */
export class TaskStreams {
  private readonly streams = new Map<string, FollowedStream>();
  private readonly byOwner = new Map<string, Map<string, Follower>>();
  private readonly tail: StreamTail;
  private readonly backpressure: StreamBackpressure;
  private closed = false;
  /** Followers on this gateway, over every stream. */
  followers = 0;

  constructor(
    private readonly store: TaskStreamStore,
    redis: { blocking: Redis; shared: Redis },
    private readonly settings: TaskStreamSettings,
    private readonly log: BusLogger,
    private readonly hooks: TaskStreamHooks,
  ) {
    this.tail = new StreamTail(redis.blocking, redis.shared, (taskId) => store.keyOf(taskId), (taskId) => this.grew(taskId), log);
    this.backpressure = new StreamBackpressure(store, settings, (taskId) => slowestOf(this.streams.get(taskId)), log);
  }

  /** Receipts held now, for tests and metrics. */
  get heldReceipts(): number {
    return this.backpressure.heldReceipts;
  }

  /** Opens the stream of a task about to be enqueued with `opts.stream`. */
  async open(queue: string, taskId: string, traceparent?: string): Promise<void> {
    const other = await this.store.open(queue, taskId, traceparent);
    if (other !== null) {
      throw new BusError('INVALID_FRAME', `task ${taskId} of queue ${other} streams under this id: choose another opts.jobId`);
    }
  }

  /** Stores a chunk of a task its writer holds; resolves with its seq once stored and its receipt may go. */
  async write(held: HeldTask | undefined, taskId: string, data: string | Uint8Array): Promise<number> {
    if (!held) throw new BusError('NOT_LEASED', `task ${taskId} is not held by this connection: only its holder streams its output`);
    if (!held.stream) throw new BusError('NOT_STREAMED', `task ${taskId} was enqueued without opts.stream`);
    const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
    if (bytes > this.settings.maxBytes) {
      throw new BusError('TOO_LARGE', `a chunk holds at most ${this.settings.maxBytes} bytes (STREAM_MAX_BYTES), this one ${bytes}`);
    }
    const appended = await this.store.append(taskId, held.attempt, data);
    if (appended === 'full') throw new BusError('TOO_LARGE', `task ${taskId} has written all the chunks a task may (STREAM_MAX_CHUNKS)`);
    if (appended === 'ended') throw new BusError('NOT_LEASED', `the stream of task ${taskId} has ended`);
    if (appended === 'no stream') throw new BusError('NOT_STREAMED', `task ${taskId} has no stream (it was removed)`);
    this.hooks.chunkStored(held.queue, bytes);
    const { seq } = appended;
    if (this.streams.has(taskId)) this.grew(taskId, seq);
    return this.backpressure.written(taskId, seq, bytes, appended.remoteNext);
  }

  /** A task ended: a streamed one's stream gets its end, under the next seq. */
  async settled(outcome: TaskOutcome): Promise<void> {
    if (!outcome.stream || outcome.kind === 'failed' || outcome.kind === 'progress') return;
    const end: StreamEnd = outcome.kind === 'completed' ? 'ok'
      : outcome.kind === 'cancelled' || TAKEN_BACK.has(outcome.reason ?? '') ? 'cancelled' : 'failed';
    const result = end === 'ok' ? JSON.stringify(outcome.result ?? null) : null;
    try {
      const seq = await this.store.end(outcome.taskId, end, result);
      if (seq === null) return;
      this.backpressure.ended(outcome.taskId);
      this.grew(outcome.taskId, seq);
      if (this.hooks.span && outcome.traceparent !== undefined) await this.traceStream(outcome, end, seq);
    } catch (err) {
      this.log.error({ err, queue: outcome.queue, taskId: outcome.taskId }, 'task streams: could not store the end of a stream');
    }
  }

  /** The span of a traced stream, from its opening (the enqueue) to its end. */
  private async traceStream(outcome: TaskOutcome, end: StreamEnd, endSeq: number): Promise<void> {
    const meta = await this.store.metaOf(outcome.taskId);
    this.hooks.span?.({
      name: `stream ${outcome.queue}`, traceparent: outcome.traceparent!, startMs: meta?.openedAt || Date.now(), endMs: Date.now(),
      attributes: { 'brainstem.queue': outcome.queue, 'brainstem.task_id': outcome.taskId, 'brainstem.stream.chunks': endSeq - 1, 'brainstem.stream.end': end },
      ...(end === 'ok' ? {} : { error: end }),
    });
  }

  /**
   * Follows a task's stream from seq `from`: `allowed` sees its queue first
   * (and throws to refuse). One follow per owner and task: a new one replaces it.
   */
  async follow(owner: string, sink: StreamSink, taskId: string, from: number, allowed: (queue: string) => void): Promise<FollowReceipt> {
    const meta = await this.store.metaOf(taskId);
    if (meta === null) {
      throw new BusError('UNKNOWN_TASK', `task ${taskId} has no stream: it was not enqueued with opts.stream, or its stream is no longer kept`);
    }
    allowed(meta.queue);
    if (this.closed) throw new BusError('UNAVAILABLE', 'the gateway is shutting down');
    this.unfollow(owner, taskId);
    const { traceparent } = meta;
    const follower = new Follower(owner, taskId, sink, from, traceparent === undefined ? undefined : { queue: meta.queue, traceparent });
    let followed = this.streams.get(taskId);
    if (!followed) {
      followed = { followers: new Set() };
      this.streams.set(taskId, followed);
    }
    followed.followers.add(follower);
    this.followers++;
    let owned = this.byOwner.get(owner);
    if (!owned) {
      owned = new Map();
      this.byOwner.set(owner, owned);
    }
    owned.set(taskId, follower);
    this.tail.watch(taskId, from - 1);
    this.backpressure.followersMoved(taskId);
    // After the receipt, which the caller sends once this resolves.
    setImmediate(() => void this.pump(follower));
    return traceparent === undefined ? {} : { traceparent };
  }

  /** Streams opened and not yet ended, over every gateway on this Redis. */
  openStreams(): Promise<number> {
    return this.store.openCount();
  }

  /** Streams with a follower on this gateway. */
  get followedStreams(): number {
    return this.streams.size;
  }

  /** Followers of the task on this gateway. */
  followerCount(taskId: string): number {
    return this.streams.get(taskId)?.followers.size ?? 0;
  }

  unfollow(owner: string, taskId: string): void {
    const follower = this.byOwner.get(owner)?.get(taskId);
    if (follower) this.remove(follower);
  }

  /** A connection went away: its follows end. */
  detach(owner: string): void {
    for (const follower of [...(this.byOwner.get(owner)?.values() ?? [])]) this.remove(follower);
  }

  close(): void {
    this.closed = true;
    for (const owner of [...this.byOwner.keys()]) this.detach(owner);
    this.tail.close();
    this.backpressure.close();
  }

  /** The task's stream has entries up to at least `seq` (or more than followers here know of). */
  private grew(taskId: string, seq?: number): void {
    if (seq !== undefined) this.tail.seen(taskId, seq);
    for (const follower of this.streams.get(taskId)?.followers ?? []) void this.pump(follower);
  }

  /** Sends the follower what storage has past its seq, while its sink takes more. */
  private async pump(follower: Follower): Promise<void> {
    if (follower.done || follower.draining) return;
    if (follower.reading) {
      follower.again = true;
      return;
    }
    follower.reading = true;
    try {
      do {
        follower.again = false;
        if (follower.sink.gone) {
          this.remove(follower);
          return;
        }
        if (follower.sink.backlogBytes > this.settings.sinkHighWater) {
          follower.draining = true;
          follower.sink.whenDrained(() => {
            follower.draining = false;
            void this.pump(follower);
          });
          return;
        }
        const entries = await this.store.read(follower.taskId, follower.next, READ_BATCH);
        if (follower.done) return;
        const first = entries[0];
        if (first && first.seq > follower.next) {
          follower.sink.gap(follower.taskId, first.seq, this.traceOnce(follower));
          follower.gapSent = true;
          follower.next = first.seq;
        }
        const head = Math.max(this.tail.head(follower.taskId), entries[entries.length - 1]?.seq ?? 0);
        for (const entry of entries) {
          if (follower.sink.gone) break;
          follower.sink.write(follower.taskId, entry, this.traceOnce(follower));
          follower.sent++;
          if (entry.kind !== 'end') this.hooks.chunkSent(head - entry.seq);
          follower.next = entry.seq + 1;
          if (entry.kind === 'end') {
            follower.ended = true;
            this.remove(follower);
            return;
          }
          if (follower.sink.backlogBytes > this.settings.sinkHighWater) {
            follower.again = true;
            break;
          }
        }
        if (entries.length === READ_BATCH) follower.again = true;
        this.advanced(follower);
      } while (follower.again);
    } catch (err) {
      this.log.warn({ err, taskId: follower.taskId }, 'task streams: reading a stream failed; retrying');
      setTimeout(() => void this.pump(follower), READ_RETRY_MS).unref();
    } finally {
      follower.reading = false;
    }
  }

  /** The task's traceparent for the first frame a follow gets, then nothing: a resumed follow gets it again. */
  private traceOnce(follower: Follower): string | undefined {
    if (follower.sent > 0 || follower.gapSent) return undefined;
    return follower.trace?.traceparent;
  }

  private advanced(follower: Follower): void {
    this.tail.seen(follower.taskId, follower.next - 1);
    this.backpressure.followersMoved(follower.taskId);
  }

  private remove(follower: Follower): void {
    if (follower.done) return;
    follower.done = true;
    if (follower.trace && this.hooks.span) {
      this.hooks.span({
        name: `follow ${follower.trace.queue}`, traceparent: follower.trace.traceparent, startMs: follower.startedAt, endMs: Date.now(),
        attributes: {
          'brainstem.queue': follower.trace.queue, 'brainstem.task_id': follower.taskId,
          'brainstem.stream.from': follower.from, 'brainstem.stream.sent': follower.sent, 'brainstem.stream.to_end': follower.ended,
        },
      });
    }
    const owned = this.byOwner.get(follower.owner);
    if (owned?.get(follower.taskId) === follower) owned.delete(follower.taskId);
    if (owned?.size === 0) this.byOwner.delete(follower.owner);
    const followed = this.streams.get(follower.taskId);
    if (!followed) return;
    followed.followers.delete(follower);
    this.followers--;
    if (followed.followers.size === 0) {
      this.streams.delete(follower.taskId);
      this.tail.unwatch(follower.taskId);
    }
    this.backpressure.followersMoved(follower.taskId);
  }
}
