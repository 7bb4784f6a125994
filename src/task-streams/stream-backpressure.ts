import type { BusLogger } from '../bus/frame-dispatcher.js';
import { ReceiptWindow, type WindowLimits } from './receipt-window.js';
import type { TaskStreamStore } from './task-stream-store.js';

/** A writer holding receipts for a follower on another gateway looks at where it is this often. */
const REMOTE_POLL_MS = 50;
/** This gateway reports where its slowest followers are at most this often per stream... */
const REPORT_MS = 50;
/** ...and a report holds this long: a killed gateway's followers stop holding writers back after it. */
const REPORT_TTL_MS = 10_000;
/** An unchanged report is not written again sooner than this (renewals come every REPORT_TTL_MS / 3). */
const UNCHANGED_REPORT_MS = REPORT_TTL_MS / 4;

/** Runs `run` once, `ms` after the first `soon()` since it last ran. */
class CoalescedTimer {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly ms: number, private readonly run: () => Promise<void>) {}

  soon(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.run();
    }, this.ms);
    this.timer.unref();
  }

  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** One written stream's receipts, and where the slowest follower on another gateway was last seen. */
interface WriterWindow {
  receipts: ReceiptWindow;
  remoteNext: number;
  lastWrite: number;
}

/**
 * Backpressure across gateways (bus protocol v3): a writer's receipts wait
 * while any follower, here or on another gateway on the same Redis, is more
 * than the window behind. Each gateway reports its slowest follower of each
 * stream it serves in the stream's readers hash in Redis; the append script
 * answers the slowest of the others with each chunk's seq, and a writer
 * holding receipts looks again every REMOTE_POLL_MS until they go.
 */
export class StreamBackpressure {
  private readonly windows = new Map<string, WriterWindow>();
  /** Streams whose slowest follower here moved since the last report, and what was last reported when. */
  private readonly moved = new Set<string>();
  private readonly reported = new Map<string, { next: number; at: number }>();
  private readonly reports = new CoalescedTimer(REPORT_MS, () => this.report());
  private readonly polls = new CoalescedTimer(REMOTE_POLL_MS, () => this.poll());
  private readonly refresh: NodeJS.Timeout;
  /** Receipts held now, for tests and metrics. */
  heldReceipts = 0;

  constructor(
    private readonly store: TaskStreamStore,
    private readonly limits: WindowLimits,
    /** The next seq of the task's slowest follower on this gateway (Infinity: none). */
    private readonly localNext: (taskId: string) => number,
    private readonly log: BusLogger,
  ) {
    // A paused follower does not move: its report is renewed before it expires.
    // A window nothing was written to for as long (its task settled through
    // another gateway) holds nothing and goes.
    this.refresh = setInterval(() => {
      for (const taskId of this.reported.keys()) this.moved.add(taskId);
      this.reports.soon();
      const stale = Date.now() - REPORT_TTL_MS;
      for (const [taskId, window] of this.windows) if (!window.receipts.holding && window.lastWrite < stale) this.windows.delete(taskId);
    }, REPORT_TTL_MS / 3);
    this.refresh.unref();
  }

  /** A chunk was stored: resolves with its seq once its receipt may go. */
  written(taskId: string, seq: number, bytes: number, remoteNext: number): number | Promise<number> {
    const local = this.localNext(taskId);
    let window = this.windows.get(taskId);
    if (!window) {
      if (local === Infinity && remoteNext === Infinity) return seq;
      window = { receipts: new ReceiptWindow(this.limits), remoteNext, lastWrite: 0 };
      this.windows.set(taskId, window);
    }
    window.remoteNext = remoteNext;
    window.lastWrite = Date.now();
    const waiting = window.receipts.stored(seq, bytes, Math.min(local, remoteNext));
    if (waiting === undefined) {
      this.dropIfIdle(taskId, window, local);
      return seq;
    }
    this.heldReceipts++;
    this.polls.soon();
    return waiting;
  }

  /** The stream ended: nothing more is written to it, and the receipts it holds go to whoever still waits for them. */
  ended(taskId: string): void {
    const window = this.windows.get(taskId);
    if (!window) return;
    this.heldReceipts -= window.receipts.release(Infinity);
    this.windows.delete(taskId);
  }

  /** The slowest follower of the task here moved (read on, came, or went). */
  followersMoved(taskId: string): void {
    this.release(taskId);
    this.moved.add(taskId);
    this.reports.soon();
  }

  close(): void {
    clearInterval(this.refresh);
    this.reports.cancel();
    this.polls.cancel();
  }

  private release(taskId: string): void {
    const window = this.windows.get(taskId);
    if (!window) return;
    const local = this.localNext(taskId);
    this.heldReceipts -= window.receipts.release(Math.min(local, window.remoteNext));
    this.dropIfIdle(taskId, window, local);
  }

  private dropIfIdle(taskId: string, window: WriterWindow, localNext: number): void {
    if (window.receipts.holding || window.remoteNext !== Infinity || localNext !== Infinity) return;
    this.windows.delete(taskId);
  }

  private async report(): Promise<void> {
    const taskIds = [...this.moved];
    this.moved.clear();
    await Promise.all(taskIds.map(async (taskId) => {
      const next = this.localNext(taskId);
      try {
        if (next === Infinity) {
          if (!this.reported.delete(taskId)) return;
          await this.store.reportReaders(taskId, null, REPORT_TTL_MS);
        } else {
          // A faster follower moved, not the slowest: nothing to tell until the renewal.
          const last = this.reported.get(taskId);
          const now = Date.now();
          if (last?.next === next && now - last.at < UNCHANGED_REPORT_MS) return;
          this.reported.set(taskId, { next, at: now });
          await this.store.reportReaders(taskId, next, REPORT_TTL_MS);
        }
      } catch (err) {
        this.log.warn({ err, taskId }, 'task streams: could not report where followers are; a writer on another gateway may run ahead of them');
      }
    }));
  }

  /** Where the other gateways' followers are now, for every stream holding receipts. */
  private async poll(): Promise<void> {
    const holding = [...this.windows].filter(([, window]) => window.receipts.holding);
    await Promise.all(holding.map(async ([taskId, window]) => {
      try {
        window.remoteNext = await this.store.remoteNext(taskId);
      } catch (err) {
        this.log.warn({ err, taskId }, 'task streams: could not read where followers on other gateways are; looking again');
      }
      this.release(taskId);
    }));
    if ([...this.windows.values()].some((window) => window.receipts.holding)) this.polls.soon();
  }
}
