import type { BusDescription } from './api.js';
import { byId, h, setText, syncKeyed } from './dom.js';
import { duration, perSecond } from './format.js';

type Connection = BusDescription['connections'][number];

interface ConnectionRates {
  at: number;
  framesIn: number;
  framesOut: number;
  inPerSecond: number | null;
  outPerSecond: number | null;
}

interface ConnectionCells {
  name: HTMLElement;
  subscriptions: HTMLElement;
  inRate: HTMLElement;
  outRate: HTMLElement;
  age: HTMLElement;
}

/**
 * Bus: connections with their names and patterns, subscribers per pattern,
 * messages per second in and out — the gateway's totals, and per
 * connection from the change of its frame counters between two refreshes.
 */
export class BusView {
  private description: BusDescription | null = null;
  private fetchedAt = 0;
  private readonly rates = new Map<string, ConnectionRates>();
  private readonly connectionsBody = byId<HTMLTableSectionElement>('bus-rows');
  private readonly patternList = byId('bus-patterns');
  private readonly totals = {
    connections: byId('bus-connections'),
    inRate: byId('bus-in'),
    outRate: byId('bus-out'),
    published: byId('bus-published'),
    dropped: byId('bus-dropped'),
  };
  private readonly cells = new WeakMap<HTMLElement, ConnectionCells>();

  constructor(private readonly ownClientId: () => string | null, private readonly changed: () => void) {}

  update(description: BusDescription, now: number): void {
    const seen = new Set<string>();
    for (const connection of description.connections) {
      seen.add(connection.clientId);
      const previous = this.rates.get(connection.clientId);
      const seconds = previous ? (now - previous.at) / 1000 : 0;
      this.rates.set(connection.clientId, {
        at: now,
        framesIn: connection.framesIn,
        framesOut: connection.framesOut,
        inPerSecond: previous && seconds > 0 ? Math.max(0, connection.framesIn - previous.framesIn) / seconds : null,
        outPerSecond: previous && seconds > 0 ? Math.max(0, connection.framesOut - previous.framesOut) / seconds : null,
      });
    }
    for (const clientId of this.rates.keys()) if (!seen.has(clientId)) this.rates.delete(clientId);
    this.description = description;
    this.fetchedAt = now;
    this.changed();
  }

  render(now: number): void {
    const description = this.description;
    if (!description) return;
    setText(this.totals.connections, String(description.counters.connections));
    setText(this.totals.inRate, perSecond(description.rates.publishedPerSecond));
    setText(this.totals.outRate, perSecond(description.rates.deliveredPerSecond));
    setText(this.totals.published, String(description.counters.published));
    setText(this.totals.dropped, String(description.counters.slowConsumersDropped));

    const connections = [...description.connections].sort((a, b) =>
      (a.name ?? '\uffff').localeCompare(b.name ?? '\uffff') || a.connectedAt.localeCompare(b.connectedAt));
    const elapsed = now - this.fetchedAt;
    syncKeyed(this.connectionsBody, connections, (connection) => connection.clientId, () => this.createRow(),
      (row, connection) => this.updateRow(row, connection, elapsed));

    const patterns = Object.entries(description.subscriptions).sort(([a], [b]) => a.localeCompare(b));
    syncKeyed(this.patternList, patterns, ([pattern]) => pattern,
      ([pattern]) => h('li', {}, h('code', { text: pattern }), h('span', { class: 'badge' })),
      (item, [, count]) => {
        const badge = item.querySelector('.badge') as HTMLElement;
        setText(badge, String(count));
        badge.title = `${count} connection${count === 1 ? '' : 's'} subscribed`;
      });
  }

  private createRow(): HTMLTableRowElement {
    const cells: ConnectionCells = {
      name: h('td', { class: 'name', attrs: { 'data-label': 'connection' } }),
      subscriptions: h('td', { class: 'patterns', attrs: { 'data-label': 'subscriptions' } }),
      inRate: h('td', { class: 'num', attrs: { 'data-label': 'in' } }),
      outRate: h('td', { class: 'num', attrs: { 'data-label': 'out' } }),
      age: h('td', { class: 'num', attrs: { 'data-label': 'age' } }),
    };
    const row = h('tr', {}, cells.name, cells.subscriptions, cells.inRate, cells.outRate, cells.age);
    this.cells.set(row, cells);
    return row;
  }

  private updateRow(row: HTMLElement, connection: Connection, elapsed: number): void {
    const cells = this.cells.get(row) as ConnectionCells;
    const rates = this.rates.get(connection.clientId);
    const own = connection.clientId === this.ownClientId();
    row.dataset.client = connection.clientId;
    setText(cells.name, `${connection.name ?? '(unnamed)'}${own ? ' · this page' : ''}`);
    cells.name.title = `${connection.clientId} from ${connection.remoteAddress}`;
    setText(cells.subscriptions, connection.subscriptions.join('  ') || '–');
    setText(cells.inRate, perSecond(rates?.inPerSecond ?? null));
    setText(cells.outRate, perSecond(rates?.outPerSecond ?? null));
    cells.inRate.title = `${connection.framesIn} frames received from it`;
    cells.outRate.title = `${connection.framesOut} frames sent to it`;
    setText(cells.age, duration(connection.ageMs + elapsed));
  }
}
