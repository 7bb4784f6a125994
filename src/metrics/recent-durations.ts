/** p50 and p95 of recent durations, in milliseconds; null with none. */
export interface RecentQuantiles {
  count: number;
  p50: number | null;
  p95: number | null;
}

/**
 * One key's samples, oldest first from `start`: a ring that grows by
 * doubling up to its bound, so a sample costs no object and dropping the
 * oldest no copy (it is taken on every task).
 */
class SampleRing {
  private at = new Float64Array(8);
  private ms = new Float64Array(8);
  private start = 0;
  length = 0;

  constructor(private readonly max: number) {}

  push(at: number, ms: number): void {
    if (this.length === this.at.length && this.length < this.max) this.grow();
    const capacity = this.at.length;
    const end = (this.start + this.length) % capacity;
    this.at[end] = at;
    this.ms[end] = ms;
    if (this.length === capacity) this.start = (this.start + 1) % capacity;
    else this.length++;
  }

  /** Drops the samples taken before `since`. */
  dropBefore(since: number): void {
    while (this.length > 0 && (this.at[this.start] as number) < since) {
      this.start = (this.start + 1) % this.at.length;
      this.length--;
    }
  }

  values(): Float64Array {
    const out = new Float64Array(this.length);
    for (let i = 0; i < this.length; i++) out[i] = this.ms[(this.start + i) % this.ms.length] as number;
    return out;
  }

  private grow(): void {
    const capacity = Math.min(this.max, this.at.length * 2);
    const at = new Float64Array(capacity);
    const ms = new Float64Array(capacity);
    for (let i = 0; i < this.length; i++) {
      at[i] = this.at[(this.start + i) % this.at.length] as number;
      ms[i] = this.ms[(this.start + i) % this.ms.length] as number;
    }
    this.at = at;
    this.ms = ms;
    this.start = 0;
  }
}

/**
 * The durations of the last `windowMs` per key (queue), at most
 * `maxPerKey` of them, for the dashboard's "over the last minutes" figures.
 * Prometheus keeps the long history; this is only the present.
 */
export class RecentDurations {
  private readonly samples = new Map<string, SampleRing>();

  constructor(private readonly windowMs: number, private readonly maxPerKey: number) {}

  add(key: string, ms: number, now = Date.now()): void {
    let ring = this.samples.get(key);
    if (!ring) {
      ring = new SampleRing(this.maxPerKey);
      this.samples.set(key, ring);
    }
    ring.push(now, ms);
  }

  forget(key: string): void {
    this.samples.delete(key);
  }

  quantiles(key: string, now = Date.now()): RecentQuantiles {
    const ring = this.samples.get(key);
    ring?.dropBefore(now - this.windowMs);
    if (!ring || ring.length === 0) return { count: 0, p50: null, p95: null };
    const sorted = ring.values().sort();
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number;
    return { count: sorted.length, p50: at(0.5), p95: at(0.95) };
  }
}
