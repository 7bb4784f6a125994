/** How the dashboard writes numbers, sizes and times: short, and the same everywhere. */

const KiB = 1024;
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function bytes(value: number): string {
  if (!Number.isFinite(value) || value <= 0) return '0 B';
  let unit = 0;
  let scaled = value;
  while (scaled >= KiB && unit < UNITS.length - 1) {
    scaled /= KiB;
    unit++;
  }
  return `${scaled >= 100 || unit === 0 ? Math.round(scaled) : scaled.toFixed(1)} ${UNITS[unit]}`;
}

export function percent(value: number): string {
  if (!Number.isFinite(value)) return '–';
  return `${value >= 100 ? Math.round(value) : value.toFixed(1)} %`;
}

/** Events or frames per second. */
export function perSecond(value: number | null): string {
  if (value === null || !Number.isFinite(value)) return '–';
  if (value === 0) return '0/s';
  if (value < 10) return `${value.toFixed(1)}/s`;
  return `${Math.round(value)}/s`;
}

/** How long a task waited or ran, to the millisecond: "40 ms", "2.5 s", "3 min"; "–" when unknown. */
export function latency(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  return `${Math.round(ms / 60_000)} min`;
}

/** "3 s ago", "4 min ago", "2 h ago", "5 d ago". */
export function ago(since: number, now: number): string {
  const seconds = Math.max(0, Math.round((now - since) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} d ago`;
}

/** "2 h 5 min", for how long something has been connected. */
export function duration(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

const pad = (value: number, width = 2) => String(value).padStart(width, '0');

/** Local wall-clock time with milliseconds: events of one second stay apart. */
export function clock(time: Date): string {
  if (Number.isNaN(time.getTime())) return '--:--:--';
  return `${pad(time.getHours())}:${pad(time.getMinutes())}:${pad(time.getSeconds())}.${pad(time.getMilliseconds(), 3)}`;
}

/** JSON on one line, cut to `max` characters. */
export function preview(value: unknown, max: number): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? 'undefined';
  } catch {
    text = String(value);
  }
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
