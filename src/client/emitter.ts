/**
 * A small typed event emitter. The client cannot use node:events: the same
 * code runs in browsers. A listener that throws does not stop the others.
 */
export class Emitter<Events extends { [name: string]: unknown }> {
  private readonly listeners = new Map<keyof Events, Set<(value: never) => void>>();

  on<K extends keyof Events>(name: K, listener: (value: Events[K]) => void): this {
    let set = this.listeners.get(name);
    if (!set) {
      set = new Set();
      this.listeners.set(name, set);
    }
    set.add(listener as (value: never) => void);
    return this;
  }

  once<K extends keyof Events>(name: K, listener: (value: Events[K]) => void): this {
    const wrapper = (value: Events[K]) => {
      this.off(name, wrapper);
      listener(value);
    };
    return this.on(name, wrapper);
  }

  off<K extends keyof Events>(name: K, listener: (value: Events[K]) => void): this {
    this.listeners.get(name)?.delete(listener as (value: never) => void);
    return this;
  }

  listenerCount(name: keyof Events): number {
    return this.listeners.get(name)?.size ?? 0;
  }

  protected emit<K extends keyof Events>(name: K, value: Events[K]): void {
    const set = this.listeners.get(name);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as (value: Events[K]) => void)(value);
      } catch {
        // One broken listener must not starve the others or the socket loop.
      }
    }
  }
}
