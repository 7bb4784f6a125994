import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { RecentDurations, type RecentQuantiles } from './recent-durations.js';

/** The bus figures the router already counts; read at scrape, never on the hot path. */
export interface BusFigures {
  connections: number;
  published: number;
  delivered: number;
  slowConsumersDropped: number;
}

export interface QueueFigures {
  name: string;
  counts: { waiting: number; active: number; delayed: number; failed: number };
}

/** Task streams (bus protocol v3) as this gateway holds them now. */
export interface StreamFigures {
  followedStreams: number;
  followers: number;
  heldReceipts: number;
}

export interface InstanceFigures {
  name: string;
  status: string;
}

/** Where the figures come from: the organs, seen through what they already expose. */
export interface MetricSources {
  bus(): BusFigures;
  queues(): Promise<QueueFigures[]>;
  /** Queues with a runtime on this gateway (idle ones are evicted). */
  liveQueues(): number;
  instances(): Promise<InstanceFigures[]>;
  streams(): StreamFigures;
  /** Streams opened and not yet ended, read from Redis (a shared figure). */
  openStreams(): Promise<number>;
  /**
   * Whether this gateway reports the figures every gateway of a cluster
   * shares (queue counts, heartbeat instances), so that a sum over
   * gateways counts them once.
   */
  reportsSharedFigures(): Promise<boolean>;
}

export type TaskSettlement = 'completed' | 'failed' | 'dead';

const QUEUE_STATES = ['waiting', 'active', 'delayed', 'failed'] as const;
/** Seconds; tasks wait and run from milliseconds (a free worker) to hours (an LLM backlog). */
/** The dashboard's wait and run times cover this window. */
const RECENT_WINDOW_MS = 5 * 60_000;
const RECENT_MAX_PER_QUEUE = 2000;
const TASK_SECONDS_BUCKETS = [0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 30, 60, 300, 1800, 3600];
/** Seqs; STREAM_WINDOW (256 by default) holds a writer back at its edge. */
const STREAM_LAG_BUCKETS = [0, 1, 4, 16, 64, 256, 1024, 4096, 16384];

/**
 * The gateway's Prometheus metrics (spec v2, section 4). Counters the organs
 * keep anyway are read when scraped; only task settlements and proxied
 * requests, which nothing else counts, are counted here as they happen.
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly queueCompleted: Counter<'queue'>;
  private readonly queueFailed: Counter<'queue'>;
  private readonly queueUndeliverable: Counter<'queue'>;
  private readonly queueLimitRefusals: Counter;
  private readonly queueWait: Histogram<'queue'>;
  private readonly queueRun: Histogram<'queue'>;
  private readonly proxyRequests: Counter<'route' | 'code'>;
  private readonly streamChunks: Counter<'queue'>;
  private readonly streamChunkBytes: Counter<'queue'>;
  private readonly streamLag: Histogram;
  private processDefaultsStarted = false;
  private readonly recentWait = new RecentDurations(RECENT_WINDOW_MS, RECENT_MAX_PER_QUEUE);
  private readonly recentRun = new RecentDurations(RECENT_WINDOW_MS, RECENT_MAX_PER_QUEUE);

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    new Gauge({
      name: 'brainstem_bus_connections', help: 'Open /bus connections on this gateway.', registers,
      collect() { this.set(sources.bus().connections); },
    });
    fromRunningTotal('brainstem_bus_published_total', 'Events published through this gateway, its own queue.* and heartbeat.* events included.', () => sources.bus().published, registers);
    fromRunningTotal('brainstem_bus_delivered_total', 'Event frames this gateway sent to its /bus connections (tasks not included).', () => sources.bus().delivered, registers);
    fromRunningTotal('brainstem_bus_slow_consumers_total', 'Connections closed because their unsent backlog passed BUS_MAX_BACKLOG_BYTES.', () => sources.bus().slowConsumersDropped, registers);

    new Gauge({
      name: 'brainstem_queue_tasks',
      help: 'Tasks per queue and state, read from Redis (shared by every gateway on that Redis: reported by one of them).',
      labelNames: ['queue', 'state'] as const,
      registers,
      async collect() {
        this.reset();
        if (!(await sources.reportsSharedFigures())) return;
        for (const queue of await sources.queues()) {
          for (const state of QUEUE_STATES) this.set({ queue: queue.name, state }, queue.counts[state]);
        }
      },
    });
    new Gauge({
      name: 'brainstem_heartbeat_instances',
      help: 'Processes with a heartbeat record, per service name and status (alive, stale, stopped).',
      labelNames: ['name', 'status'] as const,
      registers,
      async collect() {
        this.reset();
        if (!(await sources.reportsSharedFigures())) return;
        const counts = new Map<string, { name: string; status: string; count: number }>();
        for (const { name, status } of await sources.instances()) {
          const key = `${name}\u0000${status}`;
          const entry = counts.get(key) ?? { name, status, count: 0 };
          entry.count++;
          counts.set(key, entry);
        }
        for (const { name, status, count } of counts.values()) this.set({ name, status }, count);
      },
    });

    this.queueCompleted = new Counter({ name: 'brainstem_queue_completed_total', help: 'Tasks acked through this gateway.', labelNames: ['queue'] as const, registers });
    this.queueFailed = new Counter({ name: 'brainstem_queue_failed_total', help: 'Failed task attempts settled through this gateway (retried or dead).', labelNames: ['queue'] as const, registers });
    this.queueWait = new Histogram({ name: 'brainstem_queue_wait_seconds', help: 'From enqueue (or the end of its delay) to delivery to a worker.', labelNames: ['queue'] as const, buckets: TASK_SECONDS_BUCKETS, registers });
    this.queueRun = new Histogram({ name: 'brainstem_queue_run_seconds', help: 'From delivery to a worker to its ack or fail.', labelNames: ['queue'] as const, buckets: TASK_SECONDS_BUCKETS, registers });
    new Gauge({
      name: 'brainstem_queue_live', help: 'Queues with a runtime on this gateway (QUEUE_MAX_LIVE at most; idle ones are evicted).', registers,
      collect() { this.set(sources.liveQueues()); },
    });
    this.queueLimitRefusals = new Counter({ name: 'brainstem_queue_limit_refusals_total', help: 'Queue names refused with TOO_MANY_QUEUES (QUEUE_MAX_LIVE, QUEUE_MAX_PER_CONNECTION).', registers });
    this.queueUndeliverable = new Counter({ name: 'brainstem_queue_undeliverable_total', help: 'Fetched tasks failed as undeliverable (data or options unreadable, hash gone).', labelNames: ['queue'] as const, registers });
    new Gauge({
      name: 'brainstem_task_streams_open',
      help: 'Task streams opened (a task enqueued with opts.stream) and not yet ended, read from Redis (shared by every gateway on that Redis: reported by one of them).',
      registers,
      async collect() {
        this.reset();
        if (await sources.reportsSharedFigures()) this.set(await sources.openStreams());
      },
    });
    new Gauge({
      name: 'brainstem_task_streams_followed', help: 'Task streams (bus protocol v3) with at least one follower on this gateway.', registers,
      collect() { this.set(sources.streams().followedStreams); },
    });
    new Gauge({
      name: 'brainstem_task_stream_followers', help: 'Followers of task streams on this gateway, over /bus and Server-Sent Events.', registers,
      collect() { this.set(sources.streams().followers); },
    });
    new Gauge({
      name: 'brainstem_task_stream_held_receipts', help: 'Chunk receipts held back because a follower (here or on another gateway) is more than STREAM_WINDOW behind.', registers,
      collect() { this.set(sources.streams().heldReceipts); },
    });
    this.streamChunks = new Counter({ name: 'brainstem_task_stream_chunks_total', help: 'Chunks of streamed tasks stored through this gateway (text and binary, not the ends).', labelNames: ['queue'] as const, registers });
    this.streamChunkBytes = new Counter({ name: 'brainstem_task_stream_chunk_bytes_total', help: 'Bytes of those chunks: the JSON text of their data, or their raw bytes.', labelNames: ['queue'] as const, registers });
    this.streamLag = new Histogram({ name: 'brainstem_task_stream_follower_lag', help: 'Seqs a follower was behind the newest chunk this gateway knew stored, at each chunk sent to it.', buckets: STREAM_LAG_BUCKETS, registers });
    this.proxyRequests = new Counter({ name: 'brainstem_proxy_requests_total', help: 'Requests answered under a proxy route, by route prefix and HTTP status.', labelNames: ['route', 'code'] as const, registers });
  }

  taskDelivered(queue: string, waitMs: number): void {
    const ms = Math.max(0, waitMs);
    this.queueWait.observe({ queue }, ms / 1000);
    this.recentWait.add(queue, ms);
  }

  /**
   * An evicted queue's series go with it, so that client-chosen names do not
   * grow the metrics without end; counted again from zero (a counter reset
   * to Prometheus) when the queue is used again.
   */
  queueEvicted(queue: string): void {
    for (const metric of [this.queueCompleted, this.queueFailed, this.queueUndeliverable, this.queueWait, this.queueRun, this.streamChunks, this.streamChunkBytes]) metric.remove({ queue });
    this.recentWait.forget(queue);
    this.recentRun.forget(queue);
  }

  queueRefused(): void {
    this.queueLimitRefusals.inc();
  }

  taskUndeliverable(queue: string): void {
    this.queueUndeliverable.inc({ queue });
  }

  taskSettled(queue: string, settlement: TaskSettlement, runMs: number | undefined): void {
    if (settlement === 'completed') this.queueCompleted.inc({ queue });
    else this.queueFailed.inc({ queue });
    if (runMs === undefined) return;
    const ms = Math.max(0, runMs);
    this.queueRun.observe({ queue }, ms / 1000);
    this.recentRun.add(queue, ms);
  }

  streamChunkStored(queue: string, bytes: number): void {
    this.streamChunks.inc({ queue });
    this.streamChunkBytes.inc({ queue }, bytes);
  }

  streamChunkSent(behind: number): void {
    this.streamLag.observe(behind);
  }

    proxied(route: string, statusCode: number): void {
    this.proxyRequests.inc({ route, code: String(statusCode) });
  }

  /** Wait and run time per queue over the last minutes (the dashboard's figures). */
  taskTimes(queue: string, now = Date.now()): { wait: RecentQuantiles; run: RecentQuantiles } {
    return { wait: this.recentWait.quantiles(queue, now), run: this.recentRun.quantiles(queue, now) };
  }

  /**
   * The exposition. prom-client's process defaults start at the first
   * scrape: their GC observer runs at every collection, which a gateway
   * nobody scrapes should not pay for (measured with `npm run bench` S1).
   */
  metrics(): Promise<string> {
    if (!this.processDefaultsStarted) {
      this.processDefaultsStarted = true;
      collectDefaultMetrics({ register: this.registry });
    }
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** A Prometheus counter that follows a running total kept elsewhere. */
function fromRunningTotal(name: string, help: string, total: () => number, registers: Registry[]): void {
  let reported = 0;
  new Counter({
    name, help, registers,
    collect() {
      const now = total();
      if (now > reported) this.inc(now - reported);
      reported = now;
    },
  });
}
