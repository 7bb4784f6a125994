import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { BusError } from '../bus/protocol.js';
import {
  GATEWAY_WORKER_NAME, jobHost, metaKey, metaPattern, queueBeside, queueNameOfMetaKey, type FetchOptions, type TaskQueue,
} from './bullmq-adapter.js';
import type { ForeignSettlements } from './foreign-settlements.js';
import { LiveQueue, type GatewayParts } from './live-queue.js';
import { MarkerWatch } from './marker-watch.js';
import { QueueFetcher } from './queue-fetcher.js';
import type { QueueLogger } from './queue-logger.js';
import type { StoreGuard } from './store-guard.js';
import type { StoredOptions } from './stored-task.js';
import { MAX_ATTEMPTS } from './task-options.js';

/** The wait on an empty queue's marker, in ms; a new task wakes it at once. */
const DRAIN_DELAY_MS = 5000;
/**
 * The BullMQ queues whose backends lend their connections to every queue:
 * one on the worker connection for the fetchers' scripts, one on the queue
 * connection for the queues' own BullMQ objects. They hold no tasks, and
 * their prefix keeps their own keys out of the queues' (scans for
 * `PREFIX:*:meta` never list them).
 */
const TEMPLATE_QUEUE = 'gateway';
const TEMPLATE_PREFIX = 'brainstem-template';

function fixedDelayOf(opts: StoredOptions | undefined): number {
  const backoff = opts?.backoff;
  const delay = typeof backoff === 'number' ? backoff : backoff?.delay;
  return typeof delay === 'number' && delay >= 0 ? delay : 0;
}

export interface LiveQueuesOptions {
  /** Fails fast while Redis is down: the queues' own BullMQ objects. */
  queueConnection: Redis;
  /** Retries forever: fetching, settling and the shared template's scripts. */
  workerConnection: Redis;
  /** A new connection like `workerConnection`, for the markers' blocking read. */
  createEventConnection(): Redis;
  prefix: string;
  leaseMs: number;
  stalledCheckMs: number;
  /** A queue unused this long, with no pull waiting and no task held, is dropped. */
  idleMs: number;
  /** Live queues at most; past it a new name is TOO_MANY_QUEUES. */
  maxLive: number;
  log: QueueLogger;
  store: StoreGuard;
  foreign: ForeignSettlements;
  onQueueLimit?(): void;
  onEvicted?(queue: string): void;
}

/**
 * The queues live on this gateway, one LiveQueue a name, opened on use and
 * evicted when idle, and what they share: the template backends their
 * BullMQ queues and fetchers run on, the marker watch, and the timers that
 * serve them all (lease renewal, stalled check, eviction).
 */
export class LiveQueues {
  private readonly live = new Map<string, LiveQueue>();
  private readonly parts: GatewayParts;
  private readonly markers: MarkerWatch;
  private readonly workerTemplate: TaskQueue;
  private readonly queueTemplate: TaskQueue;
  private readonly fetchOptions: FetchOptions;
  private readonly renewalTimer: NodeJS.Timeout;
  private readonly stalledTimer: NodeJS.Timeout;
  private readonly evictionTimer: NodeJS.Timeout;
  /** One listener for every queue's errors (`this` is the queue): no closure per queue. */
  private readonly onQueueError: (this: TaskQueue, err: Error) => void;

  constructor(private readonly options: LiveQueuesOptions, parts: Omit<GatewayParts, 'newFetcher'>) {
    this.markers = new MarkerWatch(options.createEventConnection(), options.workerConnection, options.log);
    this.fetchOptions = {
      prefix: options.prefix,
      lockDuration: options.leaseMs,
      stalledInterval: options.stalledCheckMs,
      // Deliveries are counted against each task's own attempts (live-queue.ts).
      maxStalledCount: MAX_ATTEMPTS,
      // Recorded on each job it fetches: a settlement by this name is a gateway's own (foreign-settlements.ts).
      name: GATEWAY_WORKER_NAME,
      // A producer's own backoff strategy is unknown here: its delay is taken as fixed.
      settings: { backoffStrategy: (_attempts: number, _type?: string, _err?: Error, job?: { opts: StoredOptions }) => fixedDelayOf(job?.opts) },
    };
    this.workerTemplate = new Queue<unknown, unknown, string>(TEMPLATE_QUEUE, {
      connection: options.workerConnection, prefix: TEMPLATE_PREFIX, skipVersionCheck: true,
    });
    this.queueTemplate = new Queue<unknown, unknown, string>(TEMPLATE_QUEUE, {
      connection: options.queueConnection, prefix: TEMPLATE_PREFIX, skipVersionCheck: true,
    });
    const onRedisError = (err: Error) => options.log.debug({ err: err.message }, 'queues: redis error');
    this.workerTemplate.on('error', onRedisError);
    this.queueTemplate.on('error', onRedisError);
    const { log } = options;
    this.onQueueError = function (err) {
      log.debug({ err: err.message, queue: this.name }, 'queues: redis error');
    };
    this.parts = {
      ...parts,
      newFetcher: (queue) => new QueueFetcher(jobHost(this.workerTemplate, queue, this.fetchOptions), this.markers, DRAIN_DELAY_MS, parts.work.fetcherId),
    };
    this.renewalTimer = setInterval(() => {
      for (const queue of this.live.values()) queue.renewLeases(options.leaseMs);
    }, Math.max(100, Math.floor(options.leaseMs / 2)));
    this.renewalTimer.unref();
    // One stalled check for every queue with a fetcher: tasks whose lease
    // expired (a gateway died holding them) go back to wait.
    this.stalledTimer = setInterval(() => {
      if (this.parts.work.closing) return;
      for (const queue of this.live.values()) queue.checkStalled();
    }, options.stalledCheckMs);
    this.stalledTimer.unref();
    this.evictionTimer = setInterval(() => this.evictIdle(), Math.max(50, Math.floor(options.idleMs / 4)));
    this.evictionTimer.unref();
  }

  get size(): number {
    return this.live.size;
  }

  values(): IterableIterator<LiveQueue> {
    return this.live.values();
  }

  /** The live queue of that name, if it is live. */
  get(name: string): LiveQueue | undefined {
    return this.live.get(name);
  }

  /**
   * A queue about to be used (enqueue, pull): past QUEUE_MAX_LIVE live
   * queues, idle ones are evicted first, and a new name is refused when
   * none is. Reads (views, admin) use `open`.
   */
  use(name: string): LiveQueue {
    if (!this.live.has(name) && this.live.size >= this.options.maxLive) {
      this.evictIdle(0);
      if (this.live.size >= this.options.maxLive) {
        this.options.onQueueLimit?.();
        throw new BusError('TOO_MANY_QUEUES', `this gateway keeps ${this.options.maxLive} queues live (QUEUE_MAX_LIVE) and none is idle: ${JSON.stringify(name)} was not opened`);
      }
    }
    return this.open(name);
  }

  /** The live queue of that name, opened now if it is not live. */
  open(name: string): LiveQueue {
    let live = this.live.get(name);
    if (!live) {
      const queue = queueBeside(this.queueTemplate, name, this.options.prefix);
      queue.on('error', this.onQueueError);
      live = new LiveQueue(name, queue, this.parts);
      this.live.set(name, live);
      this.options.foreign.watch(queue);
    }
    live.lastUsed = Date.now();
    return live;
  }

  /** The live queue of a queue that exists (used since start, or known to Redis); null otherwise. */
  async known(name: string): Promise<LiveQueue | null> {
    const existing = this.live.get(name);
    if (existing) return existing;
    const exists = await this.options.store.run(() => this.options.queueConnection.exists(metaKey(this.options.prefix, name)));
    return exists ? this.open(name) : null;
  }

  /** Queues known to Redis (they have a meta key) and those used since start. */
  async names(): Promise<string[]> {
    const names = new Set(this.live.keys());
    let cursor = '0';
    do {
      const [next, keys] = await this.options.queueConnection.scan(cursor, 'MATCH', metaPattern(this.options.prefix), 'COUNT', 1000);
      cursor = next;
      for (const key of keys) names.add(queueNameOfMetaKey(this.options.prefix, key));
    } while (cursor !== '0');
    return [...names].sort();
  }

  /**
   * Drops the queues unused for `idleMs` with no pull waiting, no task held
   * and no fetch or renewal in flight: a queue name costs nothing once
   * idle, and its next use opens it again.
   */
  evictIdle(idleMs = this.options.idleMs): number {
    const before = Date.now() - idleMs;
    let evicted = 0;
    for (const live of this.live.values()) {
      if (!live.idleSince(before)) continue;
      this.live.delete(live.name);
      live.stopFetching();
      this.options.foreign.unwatch(live.queue);
      void live.queue.close().catch(() => undefined);
      this.options.onEvicted?.(live.name);
      evicted++;
    }
    return evicted;
  }

  stopRenewal(): void {
    clearInterval(this.renewalTimer);
  }

  /** Stops the stalled check, eviction and the marker watch, and closes the fetchers' template queue. */
  async closeFetching(): Promise<void> {
    clearInterval(this.stalledTimer);
    clearInterval(this.evictionTimer);
    for (const live of this.live.values()) live.stopFetching();
    this.markers.close();
    await this.workerTemplate.close();
  }

  /** Closes every live queue's BullMQ queue, then the template they run beside. */
  async closeQueues(): Promise<void> {
    await Promise.allSettled([...this.live.values()].map((live) => live.queue.close()));
    await this.queueTemplate.close();
  }
}
