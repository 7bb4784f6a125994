/**
 * Open WebSocket connections per client address and per token, so that one
 * client (a runaway loop, a hostile page on loopback) cannot hold the
 * memory of the whole gateway. Loopback counts like any address.
 */
export class ConnectionQuota {
  private readonly open = new Map<string, number>();

  constructor(private readonly maxPerClient: number) {}

  /**
   * Takes one slot under each key, or none when a key is full. Returns the
   * release function, or the full key.
   */
  take(keys: readonly string[]): { release: () => void } | { full: string } {
    for (const key of keys) {
      if ((this.open.get(key) ?? 0) >= this.maxPerClient) return { full: key };
    }
    for (const key of keys) this.open.set(key, (this.open.get(key) ?? 0) + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        for (const key of keys) {
          const left = (this.open.get(key) ?? 1) - 1;
          if (left === 0) this.open.delete(key);
          else this.open.set(key, left);
        }
      },
    };
  }

  /** Connections open under a key (`address:…` or `token:…`). */
  count(key: string): number {
    return this.open.get(key) ?? 0;
  }
}
