import type { BusEvent } from '../client/browser.js';
import type { TaskView } from '../queues/queue-service.js';
import { ApiError, type QueueSummary } from './api.js';
import { byId, h, setText, syncKeyed } from './dom.js';
import { ago, latency, perSecond, preview } from './format.js';

/** Completions per second are averaged over this window. */
const RATE_WINDOW_MS = 10_000;
const COUNT_COLUMNS = ['waiting', 'active', 'delayed', 'failed'] as const;

export interface TaskActions {
  retry(queue: string, taskId: string): Promise<unknown>;
  remove(queue: string, taskId: string): Promise<unknown>;
  cancel(queue: string, taskId: string): Promise<unknown>;
}

type TaskAction = keyof TaskActions;

interface QueueCells {
  name: HTMLElement;
  counts: Record<(typeof COUNT_COLUMNS)[number], HTMLElement>;
  rate: HTMLElement;
  workers: HTMLElement;
  wait: HTMLElement;
  run: HTMLElement;
}

interface TaskCells {
  attempts: HTMLElement;
  reason: HTMLElement;
  when: HTMLElement;
  payload: HTMLElement;
  message: HTMLElement;
  buttons: HTMLButtonElement[];
}

interface FailedGroup {
  queue: string;
  total: number;
  tasks: TaskView[];
}

interface ActiveCells {
  holder: HTMLElement;
  progress: HTMLElement;
  attempts: HTMLElement;
  payload: HTMLElement;
  message: HTMLElement;
  buttons: HTMLButtonElement[];
}

/** A task's progress as a short text: a number as is (a fraction ≤ 1 as a percentage), anything else previewed. */
function progressText(progress: unknown): string {
  if (progress === null || progress === undefined) return 'no progress reported';
  if (typeof progress === 'number') return progress > 0 && progress <= 1 ? `${Math.round(progress * 100)}%` : String(progress);
  return preview(progress, 80);
}

function describeRefusal(err: unknown): string {
  if (err instanceof ApiError && err.status === 403) return 'refused: this needs an admin token';
  return err instanceof Error ? err.message : String(err);
}

/**
 * Queues: counts per state, completions per second (counted from
 * `queue.completed` on the bus), connected workers, the active tasks with
 * their holder, progress and the admin's Cancel, and the dead-lettered
 * tasks with their reasons and the admin's Retry / Remove.
 */
export class QueuesView {
  private summaries: QueueSummary[] = [];
  private failed = new Map<string, TaskView[]>();
  private active = new Map<string, TaskView[]>();
  private readonly activeList = byId('active-groups');
  private readonly activeCells = new WeakMap<HTMLElement, ActiveCells>();
  private readonly completions = new Map<string, number[]>();
  private countingSince: number | null = null;
  private readonly body = byId<HTMLTableSectionElement>('queues-rows');
  private readonly empty = byId('queues-empty');
  private readonly failedList = byId('failed-groups');
  private readonly queueCells = new WeakMap<HTMLElement, QueueCells>();
  private readonly taskCells = new WeakMap<HTMLElement, TaskCells>();

  constructor(
    private readonly admin: boolean,
    private readonly actions: TaskActions,
    private readonly changed: () => void,
    /** Asks for a refresh from REST after a retry or a remove. */
    private readonly refreshSoon: () => void,
  ) {}

  update(summaries: readonly QueueSummary[], failed: Map<string, TaskView[]>, active = new Map<string, TaskView[]>()): void {
    this.summaries = [...summaries].sort((a, b) => a.name.localeCompare(b.name));
    this.failed = failed;
    this.active = active;
    this.changed();
  }

  /** The `queue.*` subscription is live from now: completions can be counted. */
  startCounting(now: number): void {
    this.countingSince ??= now;
  }

  onEvent(event: BusEvent, now: number): void {
    const payload = event.payload as { queue?: unknown } | null;
    if (event.type !== 'queue.completed' || typeof payload?.queue !== 'string') return;
    const times = this.completions.get(payload.queue) ?? [];
    times.push(now);
    this.completions.set(payload.queue, times);
    this.changed();
  }

  private completionRate(queue: string, now: number): number | null {
    if (this.countingSince === null) return null;
    const times = this.completions.get(queue) ?? [];
    while ((times[0] ?? Infinity) < now - RATE_WINDOW_MS) times.shift();
    const windowMs = Math.min(RATE_WINDOW_MS, Math.max(1000, now - this.countingSince));
    return times.length / (windowMs / 1000);
  }

  render(now: number): void {
    syncKeyed(this.body, this.summaries, (summary) => summary.name, () => this.createQueueRow(),
      (row, summary) => this.updateQueueRow(row, summary, now));
    this.empty.hidden = this.summaries.length > 0;

    const groups: FailedGroup[] = this.summaries
      .filter((summary) => summary.counts.failed > 0 && (this.failed.get(summary.name)?.length ?? 0) > 0)
      .map((summary) => ({ queue: summary.name, total: summary.counts.failed, tasks: this.failed.get(summary.name) ?? [] }));
    syncKeyed(this.failedList, groups, (group) => group.queue, (group) => this.createGroup(group),
      (element, group) => this.updateGroup(element, group, now));

    const working: FailedGroup[] = this.summaries
      .filter((summary) => (this.active.get(summary.name)?.length ?? 0) > 0)
      .map((summary) => ({ queue: summary.name, total: summary.counts.active, tasks: this.active.get(summary.name) ?? [] }));
    syncKeyed(this.activeList, working, (group) => group.queue, (group) => this.createGroup(group),
      (element, group) => this.updateActiveGroup(element, group));
  }

  private updateActiveGroup(element: HTMLElement, group: FailedGroup): void {
    const shown = group.tasks.length;
    setText(element.querySelector('h3') as HTMLElement,
      `${group.queue}: ${group.total} active${group.total > shown ? ` (${shown} shown)` : ''}`);
    syncKeyed(element.querySelector('ul') as HTMLElement, group.tasks, (task) => task.id,
      (task) => this.createActiveTask(group.queue, task), (item, task) => this.updateActiveTask(item, task));
  }

  private createActiveTask(queue: string, task: TaskView): HTMLLIElement {
    const cancel = h('button', { text: 'Cancel', class: 'danger', attrs: { type: 'button', 'data-action': 'cancel' } });
    const cells: ActiveCells = {
      holder: h('span', { class: 'holder' }),
      progress: h('span', { class: 'progress' }),
      attempts: h('span', { class: 'attempts' }),
      payload: h('code', { class: 'payload' }),
      message: h('span', { class: 'action-message', attrs: { role: 'status' } }),
      buttons: [cancel],
    };
    const item = h('li', { attrs: { 'data-task': task.id } },
      h('div', { class: 'task-head' }, h('code', { class: 'task-id', text: task.id }), cells.holder, cells.attempts),
      cells.progress,
      cells.payload,
      h('div', { class: 'task-actions' }, cancel, cells.message));
    if (this.admin) cancel.addEventListener('click', () => void this.act('cancel', queue, task.id, cells, this.active));
    else {
      cancel.disabled = true;
      cancel.title = 'needs an admin token';
    }
    this.activeCells.set(item, cells);
    return item;
  }

  private updateActiveTask(item: HTMLElement, task: TaskView): void {
    const cells = this.activeCells.get(item) as ActiveCells;
    setText(cells.holder, task.holder ? `held by ${task.holder}` : 'held outside this gateway');
    setText(cells.progress, progressText(task.progress));
    setText(cells.attempts, `attempt ${task.attempts}/${task.maxAttempts}`);
    setText(cells.payload, preview(task.payload, 160));
  }

  private createQueueRow(): HTMLTableRowElement {
    const count = (column: (typeof COUNT_COLUMNS)[number]) =>
      h('td', { class: 'num', attrs: { 'data-count': column, 'data-label': column } });
    const cells: QueueCells = {
      name: h('td', { class: 'name', attrs: { 'data-label': 'queue' } }),
      counts: { waiting: count('waiting'), active: count('active'), delayed: count('delayed'), failed: count('failed') },
      rate: h('td', { class: 'num', attrs: { 'data-label': 'done' } }),
      workers: h('td', { class: 'num', attrs: { 'data-label': 'workers' } }),
      wait: h('td', { class: 'num', attrs: { 'data-time': 'wait', 'data-label': 'wait p50/p95' } }),
      run: h('td', { class: 'num', attrs: { 'data-time': 'run', 'data-label': 'run p50/p95' } }),
    };
    const row = h('tr', {}, cells.name, ...COUNT_COLUMNS.map((column) => cells.counts[column]), cells.rate, cells.workers, cells.wait, cells.run);
    this.queueCells.set(row, cells);
    return row;
  }

  private updateQueueRow(row: HTMLElement, summary: QueueSummary, now: number): void {
    const cells = this.queueCells.get(row) as QueueCells;
    row.dataset.queue = summary.name;
    setText(cells.name, summary.paused ? `${summary.name} (paused)` : summary.name);
    cells.name.toggleAttribute('data-paused', summary.paused);
    for (const column of COUNT_COLUMNS) {
      setText(cells.counts[column], String(summary.counts[column]));
      cells.counts[column].toggleAttribute('data-nonzero', summary.counts[column] > 0);
    }
    setText(cells.rate, perSecond(this.completionRate(summary.name, now)));
    cells.rate.title = this.countingSince === null
      ? 'not counted: this token may not subscribe to queue.*'
      : `tasks acked per second, over the last ${RATE_WINDOW_MS / 1000} s`;
    setText(cells.workers, String(summary.pullers.length));
    cells.workers.title = summary.pullers.length === 0
      ? 'no worker is pulling from this queue'
      : summary.pullers.map((p) => `${p.name} (${p.leased} in hand, ${p.credits} more wanted)`).join('\n');
    for (const kind of ['wait', 'run'] as const) {
      const times = summary.times?.[kind];
      setText(cells[kind], times && times.count > 0 ? `${latency(times.p50)} / ${latency(times.p95)}` : '–');
      cells[kind].title = kind === 'wait'
        ? 'p50 / p95 from enqueue to delivery, last 5 minutes, tasks delivered by this gateway'
        : 'p50 / p95 from delivery to ack or fail, last 5 minutes, tasks settled through this gateway';
    }
  }

  private createGroup(group: FailedGroup): HTMLElement {
    return h('div', { class: 'failed-group', attrs: { 'data-queue': group.queue } },
      h('h3', {}),
      h('ul', { class: 'failed-tasks' }));
  }

  private updateGroup(element: HTMLElement, group: FailedGroup, now: number): void {
    const shown = group.tasks.length;
    setText(element.querySelector('h3') as HTMLElement,
      `${group.queue}: ${group.total} dead${group.total > shown ? ` (${shown} shown)` : ''}`);
    syncKeyed(element.querySelector('ul') as HTMLElement, group.tasks, (task) => task.id,
      (task) => this.createTask(group.queue, task), (item, task) => this.updateTask(item, task, now));
  }

  private createTask(queue: string, task: TaskView): HTMLLIElement {
    const buttons = [
      h('button', { text: 'Retry', attrs: { type: 'button', 'data-action': 'retry' } }),
      h('button', { text: 'Remove', class: 'danger', attrs: { type: 'button', 'data-action': 'remove' } }),
    ];
    const cells: TaskCells = {
      attempts: h('span', { class: 'attempts' }),
      reason: h('span', { class: 'reason' }),
      when: h('span', { class: 'when' }),
      payload: h('code', { class: 'payload' }),
      message: h('span', { class: 'action-message', attrs: { role: 'status' } }),
      buttons,
    };
    const item = h('li', { attrs: { 'data-task': task.id } },
      h('div', { class: 'task-head' }, h('code', { class: 'task-id', text: task.id }), cells.attempts, cells.when),
      cells.reason,
      cells.payload,
      h('div', { class: 'task-actions' }, ...buttons, cells.message));
    for (const button of buttons) {
      if (!this.admin) {
        button.disabled = true;
        button.title = 'needs an admin token';
        continue;
      }
      const action = button.dataset.action as 'retry' | 'remove';
      button.addEventListener('click', () => void this.act(action, queue, task.id, cells, this.failed));
    }
    this.taskCells.set(item, cells);
    return item;
  }

  private updateTask(item: HTMLElement, task: TaskView, now: number): void {
    const cells = this.taskCells.get(item) as TaskCells;
    setText(cells.attempts, `${task.attempts}/${task.maxAttempts} attempts`);
    setText(cells.reason, task.failedReason ?? '(no reason given)');
    cells.reason.title = task.reasons.map((reason, i) => `attempt ${i + 1}: ${reason}`).join('\n');
    setText(cells.when, task.finishedAt ? ago(Date.parse(task.finishedAt), now) : '');
    setText(cells.payload, preview(task.payload, 160));
  }

  private async act(action: TaskAction, queue: string, taskId: string, cells: { message: HTMLElement; buttons: HTMLButtonElement[] },
    list: Map<string, TaskView[]>): Promise<void> {
    for (const button of cells.buttons) button.disabled = true;
    setText(cells.message, { retry: 'retrying…', remove: 'removing…', cancel: 'cancelling…' }[action]);
    try {
      await this.actions[action](queue, taskId);
      // The gateway said yes: the row goes now; the counts follow with the refresh.
      list.set(queue, (list.get(queue) ?? []).filter((task) => task.id !== taskId));
      this.changed();
    } catch (err) {
      setText(cells.message, describeRefusal(err));
      for (const button of cells.buttons) button.disabled = false;
    }
    this.refreshSoon();
  }
}
