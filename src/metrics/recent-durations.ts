/** p50 and p95 of recent durations, in milliseconds; null with none. */
export interface RecentQuantiles {
  count: number;
  p50: number | null;
  p95: number | null;
}

/**
 * The durations of the last `windowMs` per key (queue), at most
 * `maxPerKey` of them, for the dashboard's "over the last minutes" figures.
 * Prometheus keeps the long history; this is only the present.
 */
export class RecentDurations {
  private readonly samples = new Map<string, { at: number; ms: number }[]>();

  constructor(private readonly windowMs: number, private readonly maxPerKey: number) {}

  add(key: string, ms: number, now = Date.now()): void {
    const list = this.samples.get(key) ?? [];
    list.push({ at: now, ms });
    if (list.length > this.maxPerKey) list.shift();
    this.samples.set(key, list);
  }

  forget(key: string): void {
    this.samples.delete(key);
  }

  quantiles(key: string, now = Date.now()): RecentQuantiles {
    const list = this.samples.get(key) ?? [];
    while (list.length > 0 && (list[0] as { at: number }).at < now - this.windowMs) list.shift();
    if (list.length === 0) return { count: 0, p50: null, p95: null };
    const sorted = list.map((sample) => sample.ms).sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number;
    return { count: sorted.length, p50: at(0.5), p95: at(0.95) };
  }
}
