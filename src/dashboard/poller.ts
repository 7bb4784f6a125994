/** However many events ask for it, one section is fetched at most this often. */
const MIN_GAP_MS = 1000;

/**
 * Runs `task` every `intervalMs`, never two at once; `soon()` brings the
 * next run forward (after a bus event or a button press), at most one run
 * per MIN_GAP_MS, so a busy bus does not turn into a stream of requests.
 * A hidden tab skips its runs and catches up when shown.
 */
export class Poller {
  private timer: number | null = null;
  private dueAt = 0;
  private lastRunAt = -Infinity;
  private running = false;
  private again = false;

  constructor(private readonly task: () => Promise<void>, private readonly intervalMs: number) {
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.soon(0);
    });
  }

  start(): void {
    this.schedule(0);
  }

  soon(delayMs = 250): void {
    if (this.running) {
      this.again = true;
      return;
    }
    const now = performance.now();
    const wait = Math.max(delayMs, this.lastRunAt + MIN_GAP_MS - now);
    // A run already due as soon keeps its time: a stream of events must not postpone it forever.
    if (this.timer !== null && this.dueAt <= now + wait) return;
    this.schedule(wait);
  }

  private schedule(delayMs: number): void {
    if (this.timer !== null) window.clearTimeout(this.timer);
    this.dueAt = performance.now() + delayMs;
    this.timer = window.setTimeout(() => void this.run(), delayMs);
  }

  private async run(): Promise<void> {
    this.timer = null;
    if (document.hidden) {
      this.schedule(this.intervalMs);
      return;
    }
    this.running = true;
    this.lastRunAt = performance.now();
    try {
      await this.task();
    } finally {
      this.running = false;
      const again = this.again;
      this.again = false;
      this.schedule(again ? MIN_GAP_MS : this.intervalMs);
    }
  }
}
