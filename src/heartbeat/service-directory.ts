import type { HeartbeatStatus, RecordWithStatus } from './heartbeat-monitor.js';

/** `alive`: an instance is alive; `unknown`: no heartbeat at all, only connections or routes name it. */
export type ServiceStatus = HeartbeatStatus | 'unknown';

export interface ServiceInstance {
  pid: number;
  status: HeartbeatStatus;
  cpu: number;
  memory: number;
  lastBeat: number;
}

/** A bus connection of this service: named so with `?name=`, or linked to one of its instances. */
export interface ServiceConnection {
  clientId: string;
  /** The pid it gave with `?pid=`; null when it gave none. */
  pid: number | null;
  /** The pid was proven to hold the connection: its heartbeat governs the connection's tasks. */
  linked: boolean;
  subscriptions: string[];
  /** Queues it pulls, with the credits it holds open. */
  pulls: { queue: string; credits: number }[];
  /** Tasks leased to it. */
  tasks: { queue: string; taskId: string }[];
}

export interface ServiceView {
  name: string;
  status: ServiceStatus;
  instances: ServiceInstance[];
  connections: ServiceConnection[];
  /** Prefixes of the proxy routes that name this service. */
  routes: string[];
}

/** Where a service's non-heartbeat parts come from; each organ that knows one adds its source. */
export interface ServiceSources {
  connections(): (ServiceConnection & { name: string | null })[];
  routes(): { service: string; prefix: string }[];
}

const RANK: Record<ServiceStatus, number> = { alive: 0, stale: 1, stopped: 2, unknown: 3 };

/**
 * `GET /services`: one entry per name, from the heartbeat records (its
 * instances) and from the connections and routes that carry the name. A
 * service is `alive` while any instance is; otherwise its best instance's
 * status; `unknown` when no instance ever beat.
 */
export function describeServices(records: RecordWithStatus[], sources: ServiceSources): ServiceView[] {
  const services = new Map<string, ServiceView>();
  const entry = (name: string): ServiceView => {
    let view = services.get(name);
    if (!view) {
      view = { name, status: 'unknown', instances: [], connections: [], routes: [] };
      services.set(name, view);
    }
    return view;
  };
  for (const record of records) {
    const view = entry(record.name);
    view.instances.push({ pid: record.pid, status: record.status, cpu: record.cpu, memory: record.memory, lastBeat: record.last });
    if (RANK[record.status] < RANK[view.status]) view.status = record.status;
  }
  const nameOfPid = new Map(records.map((record) => [record.pid, record.name]));
  for (const { name, ...connection } of sources.connections()) {
    // Unnamed: the service of the process it is linked to, if that process beats.
    const service = name ?? (connection.linked && connection.pid !== null ? nameOfPid.get(connection.pid) : undefined);
    if (service !== undefined) entry(service).connections.push(connection);
  }
  for (const { service, prefix } of sources.routes()) entry(service).routes.push(prefix);
  return [...services.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
