import type { ServiceView } from './service-directory.js';

/** Another gateway of the cluster, as `GET /bus` describes it. */
export interface PeerGateway {
  host: string | null;
  port: number | null;
}

const RANK = { alive: 0, stale: 1, stopped: 2, unknown: 3 } as const;

/**
 * One `GET /services` for the whole cluster: this gateway's view, plus the
 * bus connections (and routes) each other gateway holds, fetched from its
 * `GET /services?scope=local`. Heartbeat instances come from the store the
 * gateways share, so this gateway's list of them is already whole.
 */
export async function clusterServices(
  local: ServiceView[],
  peers: PeerGateway[],
  fetchPeer: (url: string) => Promise<ServiceView[]>,
): Promise<{ services: ServiceView[]; answered: number }> {
  const byName = new Map(local.map((view) => [view.name, { ...view, connections: [...view.connections], routes: [...view.routes] }]));
  let answered = 0;
  await Promise.all(peers.map(async ({ host, port }) => {
    if (host === null || port === null) return;
    const address = host.includes(':') ? `[${host}]` : host;
    let remote: ServiceView[];
    try {
      remote = await fetchPeer(`http://${address}:${port}/services?scope=local`);
    } catch {
      return;
    }
    answered++;
    for (const view of remote) {
      const mine = byName.get(view.name);
      if (!mine) {
        byName.set(view.name, { ...view, connections: [...view.connections], routes: [...view.routes] });
        continue;
      }
      mine.connections.push(...view.connections);
      for (const route of view.routes) if (!mine.routes.includes(route)) mine.routes.push(route);
      if (RANK[view.status] < RANK[mine.status]) mine.status = view.status;
    }
  }));
  const services = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { services, answered };
}
