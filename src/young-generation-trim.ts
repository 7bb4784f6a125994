import { getHeapSpaceStatistics } from 'node:v8';
import { v8Gc } from './v8-gc.js';

/** How often the young generation is looked at. */
const TICK_MS = 500;
/**
 * Between two of these GCs. V8 shrinks the young generation at a GC only when
 * allocation over its last 5 s was low: a second more, so that the burst
 * before the first does not fall inside that window.
 */
const COLLECT_EVERY_MS = 6000;
/** Allocated in a tick, below this the process counts as quiet: a quarter of what V8 calls a low rate (1 MB/s). */
const QUIET_BYTES_PER_TICK = 128 * 1024;
/** Young generation capacity from which trimming is worth a GC (V8 starts at 1 MB and doubles it up to 32 MB: 8 MB is grown). */
const GROWN_BYTES = 8 * 1024 * 1024;

export interface YoungGeneration {
  /** Capacity: what the process holds for it. */
  size: number;
  /** Allocated since the last GC, less what that GC left. */
  used: number;
}

export interface YoungGenerationTrimOptions {
  read?: () => YoungGeneration;
  /** What one look that collects runs (by default, two scavenges). */
  collect?: () => void;
}

/**
 * Gives back, a few seconds after a burst of allocation ends, the young
 * generation V8 grew for it, instead of a minute later.
 *
 * V8 doubles its young generation (up to 32 MB) while a burst keeps objects
 * alive — start-up, a wave of WebSocket handshakes — and shrinks it only at a
 * GC that sees little allocation over the last 5 s. An idle gateway runs no GC
 * until V8's memory reducer, about a minute later, and holds that memory
 * meanwhile. So while the young generation is grown and the process is quiet,
 * this runs a minor GC at most every 6 s (a few milliseconds on an emptied
 * young generation), and V8 shrinks it at the first that sees 5 quiet seconds.
 * Under load nothing runs, and V8 grows the young generation again as it needs.
 */
export class YoungGenerationTrim {
  private readonly read: () => YoungGeneration;
  private readonly collect: () => void;
  private timer: NodeJS.Timeout | undefined;
  private lastUsed: number;
  private lastCollectAt = Number.NEGATIVE_INFINITY;

  constructor(options: YoungGenerationTrimOptions = {}) {
    this.read = options.read ?? readYoungGeneration;
    this.collect = options.collect ?? twice(v8Gc('minor'));
    this.lastUsed = this.read().used;
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
    const { size, used } = this.read();
    // Less in use than a tick ago: V8 collected on its own, so allocation filled the young generation.
    const quiet = used >= this.lastUsed && used - this.lastUsed < QUIET_BYTES_PER_TICK;
    this.lastUsed = used;
    if (!quiet || size < GROWN_BYTES || now - this.lastCollectAt < COLLECT_EVERY_MS) return false;
    this.collect();
    this.lastCollectAt = now;
    this.lastUsed = this.read().used;
    return true;
  }
}

/**
 * Two scavenges back to back: measured on Node 26, one scavenge every 6 s
 * often shrank the young generation only at the second or third look (12
 * to over 20 s after a burst); two at each look shrink it at the second
 * look, and the second scavenge finds an emptied generation (cheap).
 */
function twice(collect: () => void): () => void {
  return () => {
    collect();
    collect();
  };
}

function readYoungGeneration(): YoungGeneration {
  const space = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  return { size: space?.space_size ?? 0, used: space?.space_used_size ?? 0 };
}
