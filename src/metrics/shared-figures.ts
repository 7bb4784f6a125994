import type { Redis } from 'ioredis';

/**
 * Which gateway of those sharing one Redis reports the shared figures: the
 * one holding a short lease in Redis, renewed at each of its scrapes. When
 * it stops, another takes over once the lease runs out.
 */
export class SharedFiguresLease {
  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly holder: string,
    private readonly leaseMs: number,
  ) {}

  async held(): Promise<boolean> {
    const taken = await this.redis.set(this.key, this.holder, 'PX', this.leaseMs, 'NX');
    if (taken === 'OK') return true;
    // Ours already: renew it (a plain GET then PEXPIRE races only with its expiry, which NX above covers next time).
    if ((await this.redis.get(this.key)) !== this.holder) return false;
    await this.redis.pexpire(this.key, this.leaseMs);
    return true;
  }
}

/** One value read at most once per `ttlMs`; concurrent readers share the read in flight. */
export class CachedRead<T> {
  private value: { at: number; data: T } | null = null;
  private inFlight: Promise<T> | null = null;

  constructor(private readonly read: () => Promise<T>, private readonly ttlMs: number) {}

  get(now = Date.now()): Promise<T> {
    if (this.value && now - this.value.at < this.ttlMs) return Promise.resolve(this.value.data);
    this.inFlight ??= this.read().then((data) => {
      this.value = { at: Date.now(), data };
      return data;
    }).finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }
}
