import { loadavg } from 'node:os';

/** The value at quantile q (0..1) of numbers sorted ascending (nearest rank). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] as number;
}

export function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Per-field medians of several rounds of one server's results. */
export function medianOf<T extends Record<string, number | boolean>>(rounds: T[]): T {
  const first = rounds[0];
  if (!first) throw new Error('no rounds');
  const out: Record<string, number | boolean> = {};
  for (const key of Object.keys(first)) {
    const values = rounds.map((r) => r[key]);
    out[key] = typeof first[key] === 'boolean'
      ? values.every(Boolean)
      : median(values as number[]);
  }
  return out as T;
}

export function formatNumber(value: number | boolean, digits = 0): string {
  if (typeof value === 'boolean') return value ? 'yes' : 'NO';
  if (!Number.isFinite(value)) return '-';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A plain-text table: first column left-aligned, the others right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function load(): string {
  return loadavg().map((l) => l.toFixed(2)).join(' ');
}

export function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

export const MB = 1024 * 1024;
