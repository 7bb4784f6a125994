import type { BusEvent } from '../client/browser.js';
import type { RecordWithStatus, ServiceView } from './api.js';
import { byId, h, setAttr, setText, syncKeyed } from './dom.js';
import { ago, bytes, percent } from './format.js';
import { createSparkline, drawSparkline, sparkPoints, type Sample } from './sparkline.js';

type Status = RecordWithStatus['status'];
type Metric = 'cpu' | 'memory';

/** How far back the sparklines reach. */
export const SPARK_WINDOW_MS = 5 * 60_000;

interface Service {
  record: RecordWithStatus;
  samples: Record<Metric, Sample[]>;
  /** Metrics over their warning threshold (from `heartbeat.warn`), until a sample under it. */
  warnings: Map<Metric, number>;
  /** Why a quiet service was only reported, not stopped (from `heartbeat.down`). */
  downReason: string | null;
}

const STATUS_ORDER: Record<Status, number> = { alive: 0, stale: 1, stopped: 2 };

interface Cells {
  name: HTMLElement;
  pid: HTMLElement;
  status: HTMLElement;
  cpu: HTMLElement;
  cpuSpark: SVGSVGElement;
  memory: HTMLElement;
  memorySpark: SVGSVGElement;
  last: HTMLElement;
  instances: HTMLElement;
  bus: HTMLElement;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/**
 * Services: one row per heartbeat record. REST gives the truth on each
 * refresh; `heartbeat.ping/down/warn` on the bus keep the rows live between.
 */
export class ServicesView {
  private readonly services = new Map<number, Service>();
  private readonly body = byId<HTMLTableSectionElement>('services-rows');
  private readonly empty = byId('services-empty');
  private readonly count = byId('services-count');
  private readonly cells = new WeakMap<HTMLElement, Cells>();
  /** `GET /services` by name: each service's bus connections and proxy routes. */
  private directory = new Map<string, ServiceView>();

  constructor(private readonly limits: Record<string, number>, private readonly changed: () => void) {}

  /** Replaces the rows with the gateway's records, and the bus side of each from `GET /services`. */
  update(records: readonly RecordWithStatus[], directory: readonly ServiceView[] = []): void {
    this.directory = new Map(directory.map((view) => [view.name, view]));
    const seen = new Set<number>();
    for (const record of records) {
      seen.add(record.pid);
      // A ping that arrived while the request was on its way is newer than the response.
      if (record.last < (this.services.get(record.pid)?.record.last ?? -Infinity)) continue;
      this.upsert(record);
    }
    for (const pid of this.services.keys()) if (!seen.has(pid)) this.services.delete(pid);
    this.changed();
  }

  onEvent(event: BusEvent): void {
    const payload = event.payload;
    if (!isObject(payload) || typeof payload.pid !== 'number') return;
    const service = this.services.get(payload.pid);
    if (event.type === 'heartbeat.ping' && typeof payload.name === 'string') {
      this.upsert({ ...(payload as unknown as RecordWithStatus), status: 'alive' }).downReason = null;
    } else if (event.type === 'heartbeat.down' && service) {
      service.record = { ...service.record, status: payload.action === 'stopped' ? 'stopped' : 'stale' };
      service.downReason = typeof payload.reason === 'string' ? payload.reason : null;
    } else if (event.type === 'heartbeat.warn' && service && (payload.metric === 'cpu' || payload.metric === 'memory')) {
      service.warnings.set(payload.metric, typeof payload.threshold === 'number' ? payload.threshold : 0);
    } else {
      return;
    }
    this.changed();
  }

  private upsert(record: RecordWithStatus): Service {
    let service = this.services.get(record.pid);
    if (!service || service.record.name !== record.name) {
      service = { record, samples: { cpu: [], memory: [] }, warnings: new Map(), downReason: null };
      this.services.set(record.pid, service);
    }
    const newest = service.samples.cpu.at(-1)?.at ?? -Infinity;
    if (record.last > newest) {
      for (const metric of ['cpu', 'memory'] as const) {
        const samples = service.samples[metric];
        samples.push({ at: record.last, value: record[metric] });
        const from = record.last - SPARK_WINDOW_MS;
        while ((samples[0]?.at ?? Infinity) < from) samples.shift();
        const threshold = service.warnings.get(metric);
        if (threshold !== undefined && record[metric] <= threshold) service.warnings.delete(metric);
      }
    }
    service.record = record;
    return service;
  }

  render(now: number): void {
    const services = [...this.services.values()].sort((a, b) =>
      STATUS_ORDER[a.record.status] - STATUS_ORDER[b.record.status]
      || a.record.name.localeCompare(b.record.name)
      || a.record.pid - b.record.pid);
    const alive = new Map<string, number>();
    let aliveTotal = 0;
    for (const { record } of services) {
      if (record.status !== 'alive') continue;
      alive.set(record.name, (alive.get(record.name) ?? 0) + 1);
      aliveTotal++;
    }
    syncKeyed(this.body, services, (service) => String(service.record.pid), () => this.createRow(),
      (row, service) => this.updateRow(row, service, alive.get(service.record.name) ?? 0, now));
    this.empty.hidden = services.length > 0;
    setText(this.count, services.length === 0 ? '' : `${aliveTotal} alive of ${services.length}`);
  }

  private createRow(): HTMLTableRowElement {
    const cells: Cells = {
      name: h('td', { class: 'name', attrs: { 'data-label': 'name' } }),
      pid: h('td', { class: 'num', attrs: { 'data-label': 'pid' } }),
      status: h('span', { class: 'status' }),
      cpu: h('span', { class: 'metric' }),
      cpuSpark: createSparkline('cpu over the last minutes'),
      memory: h('span', { class: 'metric' }),
      memorySpark: createSparkline('memory over the last minutes'),
      last: h('td', { class: 'num', attrs: { 'data-label': 'last beat' } }),
      instances: h('td', { class: 'num', attrs: { 'data-label': 'instances' } }),
      bus: h('td', { class: 'num', attrs: { 'data-label': 'bus' } }),
    };
    const row = h('tr', {},
      cells.name,
      cells.pid,
      h('td', { class: 'status-cell', attrs: { 'data-label': 'status' } }, cells.status),
      h('td', { class: 'spark-cell', attrs: { 'data-label': 'cpu' } }, cells.cpu, cells.cpuSpark),
      h('td', { class: 'spark-cell', attrs: { 'data-label': 'memory' } }, cells.memory, cells.memorySpark),
      cells.last,
      cells.instances,
      cells.bus);
    this.cells.set(row, cells);
    return row;
  }

  private updateRow(row: HTMLElement, service: Service, aliveOfName: number, now: number): void {
    const cells = this.cells.get(row) as Cells;
    const { record } = service;
    row.dataset.pid = String(record.pid);
    row.dataset.status = record.status;
    setText(cells.name, record.name);
    cells.name.title = record.local ? `${record.name} (this machine)` : `${record.name} (beats from another machine)`;
    setText(cells.pid, String(record.pid));
    setText(cells.status, record.status);
    setAttr(cells.status, 'data-status', record.status);
    cells.status.title = service.downReason ? `went quiet; not stopped: ${service.downReason}` : '';
    setText(cells.cpu, percent(record.cpu));
    setText(cells.memory, bytes(record.memory));
    cells.cpu.toggleAttribute('data-warn', service.warnings.has('cpu'));
    cells.memory.toggleAttribute('data-warn', service.warnings.has('memory'));
    drawSparkline(cells.cpuSpark, sparkPoints(service.samples.cpu, now, SPARK_WINDOW_MS, 1));
    drawSparkline(cells.memorySpark, sparkPoints(service.samples.memory, now, SPARK_WINDOW_MS));
    setText(cells.last, ago(record.last, now));
    cells.last.title = new Date(record.last).toLocaleString();
    const limit = this.limits[record.name];
    setText(cells.instances, `${aliveOfName} / ${limit ?? '∞'}`);
    cells.instances.title = limit === undefined ? 'live instances; no limit in the ecosystem file' : `live instances of ${record.name}; the ecosystem file allows ${limit}`;
    cells.instances.toggleAttribute('data-full', limit !== undefined && aliveOfName >= limit);
    this.updateBusCell(cells.bus, record);
  }

  /** This process's bus connections (by `?pid=`), the tasks they hold, and the proxy routes its name gates. */
  private updateBusCell(cell: HTMLElement, record: RecordWithStatus): void {
    const view = this.directory.get(record.name);
    const connections = view?.connections.filter((connection) => connection.pid === record.pid) ?? [];
    const tasks = connections.reduce((sum, connection) => sum + connection.tasks.length, 0);
    setText(cell, connections.length === 0 ? '–' : `${connections.length} conn · ${tasks} task${tasks === 1 ? '' : 's'}`);
    const lines = connections.map((connection) => [
      `${connection.clientId}${connection.linked ? ' (linked to its heartbeat)' : ' (pid not proven)'}`,
      connection.subscriptions.length > 0 ? `  subscribes ${connection.subscriptions.join(' ')}` : '',
      ...connection.pulls.map((pull) => `  pulls ${pull.queue} (${pull.credits})`),
      ...connection.tasks.map((task) => `  holds ${task.queue} ${task.taskId}`),
    ].filter(Boolean).join('\n'));
    if (view && view.routes.length > 0) lines.push(`routes: ${view.routes.join(' ')}`);
    cell.title = lines.length > 0 ? lines.join('\n') : 'no bus connection gives this pid';
  }
}
