/** The part of a bus connection a link needs; a BusConnection satisfies it. */
export interface LinkedConnection {
  readonly id: string;
  readonly closing: boolean;
}

/** The pid a connection gave with `?pid=`, and whether it was proven to own the connection's socket. */
export interface ConnectionPid {
  pid: number;
  linked: boolean;
}

/**
 * Which bus connections belong to which process. A connection's `?pid=` is
 * a label until the gateway proves the pid holds the connection's socket;
 * then it is linked, and when that process's heartbeat lapses its linked
 * connections are the ones that lose their work. Only linked connections
 * are ever acted on: an unproven pid names no one.
 */
export class ProcessLinks<C extends LinkedConnection> {
  private readonly pidOf = new Map<string, ConnectionPid>();
  private readonly linkedTo = new Map<number, Map<string, C>>();

  /** The connection said it is `pid`: shown, not yet trusted. */
  label(connection: C, pid: number): void {
    this.pidOf.set(connection.id, { pid, linked: false });
  }

  /** The pid was proven to own the connection's socket. A connection that closed meanwhile stays unlinked. */
  link(connection: C): void {
    const entry = this.pidOf.get(connection.id);
    if (!entry || connection.closing) return;
    entry.linked = true;
    let connections = this.linkedTo.get(entry.pid);
    if (!connections) {
      connections = new Map();
      this.linkedTo.set(entry.pid, connections);
    }
    connections.set(connection.id, connection);
  }

  /** The connection closed. */
  forget(connectionId: string): void {
    const entry = this.pidOf.get(connectionId);
    if (!entry) return;
    this.pidOf.delete(connectionId);
    const connections = this.linkedTo.get(entry.pid);
    connections?.delete(connectionId);
    if (connections?.size === 0) this.linkedTo.delete(entry.pid);
  }

  /** What a connection said about its pid; undefined when it gave none. */
  pidOfConnection(connectionId: string): ConnectionPid | undefined {
    return this.pidOf.get(connectionId);
  }

  /** The connections proven to belong to `pid`. */
  linked(pid: number): C[] {
    return [...(this.linkedTo.get(pid)?.values() ?? [])];
  }
}
