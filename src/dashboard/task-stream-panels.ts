import { byId, h, setText } from './dom.js';
import { bytes, preview } from './format.js';

/**
 * Open EventSources at most: each holds one of the browser's six HTTP/1.1
 * connections to the gateway, which the page's REST refreshes need too.
 * A panel past it waits for one to end.
 */
const MAX_FOLLOWED = 3;
/** Ended panels kept on the page (the oldest goes first); a live one is never dropped. */
const MAX_ENDED = 10;
/** Text kept per panel: a long stream's oldest output is cut, so the page's memory stays bounded. */
const MAX_TEXT_CHARS = 100_000;

export interface StreamedTask {
  queue: string;
  id: string;
}

/** Outcomes whose event says the task was streamed (bus protocol v3: `stream: true` in the payload). */
const ENDED_TYPES = new Set(['queue.completed', 'queue.dead', 'queue.cancelled']);

/** The streamed task an outcome event names, if it names one. */
export function streamedTaskOf(event: { type: string; payload?: unknown }): StreamedTask | null {
  if (!ENDED_TYPES.has(event.type)) return null;
  const payload = event.payload as { queue?: unknown; taskId?: unknown; stream?: unknown } | null;
  if (payload?.stream !== true || typeof payload.queue !== 'string' || typeof payload.taskId !== 'string') return null;
  return { queue: payload.queue, id: payload.taskId };
}

type EndKind = 'ok' | 'failed' | 'cancelled';

/** The `end` event's data (bus protocol v3 §4). */
interface StreamEnd {
  end: EndKind;
  result?: unknown;
}

function byteLengthOfBase64(data: string): number {
  const padding = data.endsWith('==') ? 2 : data.endsWith('=') ? 1 : 0;
  return (data.length / 4) * 3 - padding;
}

/**
 * One streamed task's output, fed by an EventSource on
 * `GET /queues/:name/tasks/:id/stream`: text chunks appended as they come
 * (a string as is, other JSON as its JSON text), runs of binary chunks as
 * one count of chunks and bytes, and the end with its result.
 */
class StreamPanel {
  readonly element: HTMLElement;
  private readonly state: HTMLElement;
  private readonly output: HTMLPreElement;
  private readonly result: HTMLElement;
  private readonly cut: HTMLElement;
  private source: EventSource | null = null;
  private textChars = 0;
  /** The binary run being counted, while no text chunk came after it. */
  private binaryRun: { element: HTMLElement; chunks: number; bytes: number } | null = null;
  ended = false;

  constructor(readonly task: StreamedTask, private readonly url: string, close: () => void) {
    this.state = h('span', { class: 'stream-state', attrs: { role: 'status' } });
    this.output = h('pre', { class: 'stream-output', attrs: { 'aria-live': 'off' } });
    this.result = h('code', { class: 'stream-result' });
    this.cut = h('p', { class: 'stream-cut', text: `earlier output cut: the last ${MAX_TEXT_CHARS.toLocaleString('en')} characters are kept` });
    this.cut.hidden = true;
    this.result.hidden = true;
    const closeButton = h('button', { text: 'Close', attrs: { type: 'button', 'data-action': 'close' } });
    closeButton.addEventListener('click', close);
    this.element = h('article', { class: 'stream-panel', attrs: { 'data-task': task.id, 'data-queue': task.queue } },
      h('div', { class: 'task-head' },
        h('span', { class: 'stream-queue', text: task.queue }),
        h('code', { class: 'task-id', text: task.id }),
        this.state,
        closeButton),
      this.cut,
      this.output,
      this.result);
    this.showState('waiting', 'waiting for a free connection');
  }

  get following(): boolean {
    return this.source !== null;
  }

  /** Opens the EventSource; `done` is called once it is closed for good. */
  follow(done: () => void): void {
    const source = new EventSource(this.url);
    this.source = source;
    this.showState('connecting', 'connecting…');
    source.addEventListener('open', () => this.showState('streaming', 'streaming'));
    source.addEventListener('chunk', (event) => this.appendText(JSON.parse((event as MessageEvent<string>).data)));
    source.addEventListener('binary', (event) => this.countBinary(byteLengthOfBase64((event as MessageEvent<string>).data)));
    source.addEventListener('gap', (event) => {
      const { seq } = JSON.parse((event as MessageEvent<string>).data) as { seq: number };
      this.appendNote(`(chunks before ${seq} are no longer kept)`);
    });
    source.addEventListener('end', (event) => {
      this.showEnd(JSON.parse((event as MessageEvent<string>).data) as StreamEnd);
    });
    source.addEventListener('error', () => {
      // The response ends after `end`: closed now, before the EventSource reconnects, and not
      // earlier (closing it under an unfinished response aborts the request).
      if (this.ended) {
        this.stop();
        done();
        return;
      }
      // CONNECTING: it resumes by itself with Last-Event-ID. CLOSED: the gateway refused it (no stream, no right).
      if (source.readyState === EventSource.CONNECTING) {
        this.showState('connecting', 'reconnecting…');
        return;
      }
      this.stop();
      this.ended = true;
      this.showState('unavailable', 'the gateway has no stream of this task for this page');
      done();
    });
  }

  stop(): void {
    this.source?.close();
    this.source = null;
  }

  private showState(state: string, text: string): void {
    this.element.dataset.state = state;
    setText(this.state, text);
  }

  private showEnd({ end, result }: StreamEnd): void {
    this.ended = true;
    this.element.dataset.end = end;
    this.showState('ended', { ok: 'ended: ok', failed: 'ended: failed', cancelled: 'ended: cancelled' }[end] ?? `ended: ${String(end)}`);
    if (end === 'ok') {
      setText(this.result, `result: ${preview(result ?? null, 400)}`);
      this.result.hidden = false;
    }
  }

  private appendText(data: unknown): void {
    const text = typeof data === 'string' ? data : `${preview(data, MAX_TEXT_CHARS)}\n`;
    this.binaryRun = null;
    const last = this.output.lastChild;
    if (last instanceof Text) last.appendData(text);
    else this.output.append(text);
    this.textChars += text.length;
    this.trim();
  }

  private countBinary(size: number): void {
    if (!this.binaryRun) {
      this.binaryRun = { element: h('span', { class: 'stream-binary' }), chunks: 0, bytes: 0 };
      this.output.append(this.binaryRun.element);
    }
    this.binaryRun.chunks++;
    this.binaryRun.bytes += size;
    const { chunks } = this.binaryRun;
    setText(this.binaryRun.element, `[${chunks} binary chunk${chunks === 1 ? '' : 's'}, ${bytes(this.binaryRun.bytes)}]`);
  }

  private appendNote(text: string): void {
    this.binaryRun = null;
    this.output.append(h('span', { class: 'stream-note', text }));
  }

  /** Drops the oldest text past the cap. */
  private trim(): void {
    while (this.textChars > MAX_TEXT_CHARS) {
      const first = this.output.firstChild;
      if (!first) return;
      if (first instanceof Text && first.length > this.textChars - MAX_TEXT_CHARS) {
        const excess = this.textChars - MAX_TEXT_CHARS;
        first.deleteData(0, excess);
        this.textChars -= excess;
      } else {
        if (first instanceof Text) this.textChars -= first.length;
        first.remove();
      }
      this.cut.hidden = false;
    }
  }
}

/**
 * The output panels of streamed tasks (enqueued with `opts.stream`): one
 * per task the queues card has seen active or whose end came as an event
 * (its kept stream is followed from its start), kept after its end until
 * closed, at most `MAX_FOLLOWED` followed at a time.
 */
export class TaskStreamPanels {
  private readonly panels = new Map<string, StreamPanel>();
  private readonly list = byId('task-streams');

  constructor(private readonly streamUrl: (task: StreamedTask) => string) {}

  /** Adds a panel for each streamed task not shown yet. */
  show(tasks: readonly StreamedTask[]): void {
    for (const task of tasks) {
      const key = `${task.queue}\n${task.id}`;
      if (this.panels.has(key)) continue;
      const panel = new StreamPanel(task, this.streamUrl(task), () => this.close(key));
      this.panels.set(key, panel);
      this.list.prepend(panel.element);
    }
    this.followWaiting();
    this.dropOldEnded();
  }

  private close(key: string): void {
    const panel = this.panels.get(key);
    if (!panel) return;
    panel.stop();
    panel.element.remove();
    this.panels.delete(key);
    this.followWaiting();
  }

  /** Oldest first (the map's order): the task seen first is followed first. */
  private followWaiting(): void {
    let followed = [...this.panels.values()].filter((panel) => panel.following).length;
    for (const panel of this.panels.values()) {
      if (followed >= MAX_FOLLOWED) return;
      if (panel.following || panel.ended) continue;
      panel.follow(() => {
        this.followWaiting();
        this.dropOldEnded();
      });
      followed++;
    }
  }

  private dropOldEnded(): void {
    const ended = [...this.panels.entries()].filter(([, panel]) => panel.ended);
    for (const [key] of ended.slice(0, Math.max(0, ended.length - MAX_ENDED))) this.close(key);
  }
}
