/** A name's first live instance appeared (`service.up`) or its last one went (`service.down`). */
export interface ServiceTransition {
  type: 'service.up' | 'service.down';
  name: string;
}

/**
 * Which names have live instances on this gateway, as beats arrive and
 * services go down: the events a subscriber needs to know a service is up,
 * without counting instances itself.
 */
export class LiveServices {
  private readonly pidsByName = new Map<string, Set<number>>();
  private readonly nameOfPid = new Map<number, string>();

  /** A beat of `pid` as `name` was accepted. A pid that beat under another name leaves that one first. */
  alive(pid: number, name: string): ServiceTransition[] {
    if (this.nameOfPid.get(pid) === name) return [];
    const transitions = this.gone(pid);
    let pids = this.pidsByName.get(name);
    if (!pids) {
      pids = new Set();
      this.pidsByName.set(name, pids);
    }
    pids.add(pid);
    this.nameOfPid.set(pid, name);
    if (pids.size === 1) transitions.push({ type: 'service.up', name });
    return transitions;
  }

  isAlive(name: string): boolean {
    return this.pidsByName.has(name);
  }

  /** `pid` is no longer alive (reported down). */
  gone(pid: number): ServiceTransition[] {
    const name = this.nameOfPid.get(pid);
    if (name === undefined) return [];
    this.nameOfPid.delete(pid);
    const pids = this.pidsByName.get(name);
    pids?.delete(pid);
    if (pids?.size !== 0) return [];
    this.pidsByName.delete(name);
    return [{ type: 'service.down', name }];
  }
}
