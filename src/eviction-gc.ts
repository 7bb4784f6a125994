import { v8Gc } from './v8-gc.js';

/** How often the live queue count is looked at. */
const TICK_MS = 1000;
/** Queues evicted since the last look, from which their garbage is worth a major GC. */
const LARGE_DROP = 1000;
/** Between two such GCs at most: under churn, V8's own GCs do the work. */
const COLLECT_EVERY_MS = 60_000;

export interface EvictionGcOptions {
  /** Queues live now. */
  live: () => number;
  /** One major GC. */
  collect?: () => void;
}

/**
 * Collects, once thousands of idle queues were evicted, the garbage they
 * left (their BullMQ objects, and the commands that named their keys) at
 * once: an idle gateway allocates too little for V8 to run a major GC on
 * its own, and would hold that memory for minutes.
 */
export class EvictionGc {
  private readonly live: () => number;
  private readonly collect: () => void;
  private timer: NodeJS.Timeout | undefined;
  private peak: number;
  private lastCollectAt = Number.NEGATIVE_INFINITY;

  constructor(options: EvictionGcOptions) {
    this.live = options.live;
    this.collect = options.collect ?? v8Gc('major');
    this.peak = this.live();
  }

  start(): void {
    this.timer ??= setInterval(() => this.tick(performance.now()), TICK_MS).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One look; `now` in milliseconds. Returns whether it collected. */
  tick(now: number): boolean {
    const live = this.live();
    if (live >= this.peak || this.peak - live < LARGE_DROP || now - this.lastCollectAt < COLLECT_EVERY_MS) {
      this.peak = Math.max(this.peak, live);
      return false;
    }
    this.collect();
    this.lastCollectAt = now;
    this.peak = live;
    return true;
  }
}
