/** How far the slowest follower may fall behind before a writer's receipts wait. */
export interface WindowLimits {
  /** Chunks (STREAM_WINDOW). */
  window: number;
  /** Bytes (STREAM_WINDOW_BYTES). */
  windowBytes: number;
}

/** A receipt waiting for the slowest follower. */
interface HeldReceipt {
  seq: number;
  release(): void;
}

/**
 * One followed stream's backpressure: the sizes of the chunks written
 * through this gateway that its slowest follower has not read, and the
 * receipts held until that follower is within the window of them. The
 * slowest follower's next seq is passed in (Infinity: no follower, nothing held).
 */
export class ReceiptWindow {
  /** Bytes of chunks by seq, down to the slowest follower's. */
  private readonly sizes = new Map<number, number>();
  private readonly held: HeldReceipt[] = [];

  constructor(private readonly limits: WindowLimits) {}

  get holding(): boolean {
    return this.held.length > 0;
  }

  /**
   * A chunk was stored: `undefined` if its receipt may go now, else a
   * promise of its seq that resolves once `release` lets it go.
   */
  stored(seq: number, bytes: number, slowest: number): Promise<number> | undefined {
    this.sizes.set(seq, bytes);
    if (this.admits(seq, slowest)) return undefined;
    return new Promise((resolve) => {
      this.held.push({ seq, release: () => resolve(seq) });
    });
  }

  /** Lets go of the receipts the slowest follower's progress allows, in order, and of sizes it has read; answers how many went. */
  release(slowest: number): number {
    let released = 0;
    while (this.held.length > 0 && this.admits(this.held[0]!.seq, slowest)) {
      this.held.shift()!.release();
      released++;
    }
    for (const seq of this.sizes.keys()) if (seq < slowest) this.sizes.delete(seq);
    return released;
  }

  /** Whether the receipt of chunk `seq` may go: the slowest follower is within the window of it. */
  private admits(seq: number, slowest: number): boolean {
    if (seq < slowest) return true;
    if (seq - slowest + 1 > this.limits.window) return false;
    let bytes = 0;
    for (let s = slowest; s <= seq; s++) bytes += this.sizes.get(s) ?? 0;
    return bytes <= this.limits.windowBytes;
  }
}
