interface Bucket {
  tokens: number;
  refilledAt: number;
  /** Frames refused since the last one accepted. */
  refused: number;
}

export type RateVerdict = 'accept' | 'refuse' | 'close';

/**
 * Per-connection token bucket on incoming frames: `perSecond` frames a
 * second on average, bursts up to one second's worth. A connection that
 * keeps sending through another full second of refusals is to be closed.
 */
export class FrameRateLimiter {
  private readonly buckets = new WeakMap<object, Bucket>();

  constructor(private readonly perSecond: number, private readonly now: () => number = Date.now) {}

  check(connection: object): RateVerdict {
    const now = this.now();
    let bucket = this.buckets.get(connection);
    if (!bucket) {
      bucket = { tokens: this.perSecond, refilledAt: now, refused: 0 };
      this.buckets.set(connection, bucket);
    } else if (now > bucket.refilledAt) {
      bucket.tokens = Math.min(this.perSecond, bucket.tokens + ((now - bucket.refilledAt) * this.perSecond) / 1000);
      bucket.refilledAt = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      bucket.refused = 0;
      return 'accept';
    }
    bucket.refused++;
    return bucket.refused > this.perSecond ? 'close' : 'refuse';
  }
}
