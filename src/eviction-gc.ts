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
 * its own, and would hold that memory for minutes. It waits for the count
 * to stop falling: queues used together go idle over a few eviction
 * passes, and one GC after the last collects what all of them left.
 */
export class EvictionGc {
  private readonly live: () => number;
  private readonly collect: () => void;
  private timer: NodeJS.Timeout | undefined;
  private peak: number;
  /** The count at the last look. */
  private last: number;
  private lastCollectAt = Number.NEGATIVE_INFINITY;

  constructor(options: EvictionGcOptions) {
    this.live = options.live;
    // A regular major GC frees their objects, but V8 keeps the pages until
    // its memory reducer runs, tens of seconds later; a last-resort one
    // compacts and gives them back at once (about 0.2 s at 10,000 queues).
    this.collect = options.collect ?? v8Gc('major', 'last-resort');
    this.peak = this.live();
    this.last = this.peak;
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
    const falling = live < this.last;
    this.last = live;
    if (live >= this.peak || falling || this.peak - live < LARGE_DROP || now - this.lastCollectAt < COLLECT_EVERY_MS) {
      this.peak = Math.max(this.peak, live);
      return false;
    }
    this.collect();
    this.lastCollectAt = now;
    this.peak = live;
    return true;
  }
}
