import { isValidPattern, patternMatches, type BusEvent } from '../client/browser.js';
import { byId, h, setText, syncKeyed } from './dom.js';
import { clock, preview } from './format.js';

export interface TailEntry {
  seq: number;
  event: BusEvent;
}

/**
 * The last `capacity` events, oldest dropped first: the tail's memory stays
 * bounded however busy the bus is. While paused it keeps collecting (up to
 * the same cap) and counts what the frozen view has not shown.
 */
export class EventLog {
  private entries: TailEntry[] = [];
  private nextSeq = 1;
  private frozen: TailEntry[] | null = null;
  unseen = 0;

  constructor(readonly capacity: number) {}

  /**
   * Events from before the tail opened (retained history), older than
   * anything added so far: placed first; one already here (same offset)
   * is not shown twice.
   */
  addEarlier(events: BusEvent[]): void {
    const offsetOf = (event: BusEvent) => (event as BusEvent & { offset?: string }).offset;
    const present = new Set(this.entries.map((entry) => offsetOf(entry.event)));
    const earlier = events
      .filter((event) => offsetOf(event) === undefined || !present.has(offsetOf(event)))
      .map((event) => ({ seq: this.nextSeq++, event }));
    this.entries = [...earlier, ...this.entries].slice(-this.capacity);
  }

  add(event: BusEvent): void {
    this.entries.push({ seq: this.nextSeq++, event });
    if (this.entries.length > this.capacity) this.entries.splice(0, this.entries.length - this.capacity);
    if (this.frozen) this.unseen++;
  }

  get size(): number {
    return this.entries.length;
  }

  get paused(): boolean {
    return this.frozen !== null;
  }

  pause(): void {
    this.frozen ??= [...this.entries];
  }

  resume(): void {
    this.frozen = null;
    this.unseen = 0;
  }

  clear(): void {
    this.entries = [];
    if (this.frozen) this.frozen = [];
    this.unseen = 0;
  }

  /** Newest first, those whose type matches `pattern`, at most `limit`. */
  visible(pattern: string, limit: number): TailEntry[] {
    const source = this.frozen ?? this.entries;
    const shown: TailEntry[] = [];
    for (let i = source.length - 1; i >= 0 && shown.length < limit; i--) {
      const entry = source[i] as TailEntry;
      if (patternMatches(pattern, entry.event.type)) shown.push(entry);
    }
    return shown;
  }
}

/** Events kept in memory, and drawn at most (newest first). */
const CAPACITY = 1000;
const SHOWN = 200;
const PAYLOAD_CHARS = 240;

export interface TailSubscriber {
  subscribe(pattern: string, handler: (event: BusEvent) => void): Promise<unknown>;
  unsubscribe(pattern: string, handler: (event: BusEvent) => void): Promise<void>;
}

/**
 * The live event tail: subscribes to its filter pattern (so a narrow filter
 * also narrows what the gateway sends this page), shows what matches,
 * pauses and clears.
 */
export class EventTail {
  private readonly log = new EventLog(CAPACITY);
  private pattern: string;
  private readonly list = byId<HTMLOListElement>('tail-list');
  private readonly empty = byId('tail-empty');
  private readonly input = byId<HTMLInputElement>('tail-filter');
  private readonly pauseButton = byId<HTMLButtonElement>('tail-pause');
  private readonly status = byId('tail-status');
  private readonly problem = byId('tail-problem');
  private readonly receive = (event: BusEvent) => {
    this.log.add(event);
    this.changed();
  };

  constructor(
    private readonly bus: TailSubscriber,
    initialPattern: string,
    private readonly changed: () => void,
    /** A new filter is followed (the bus card's subscriptions changed). */
    private readonly followed: () => void,
    /** The last retained events of a pattern, shown when the tail opens on it. */
    private readonly earlier: (pattern: string) => Promise<BusEvent[]> = async () => [],
  ) {
    this.pattern = isValidPattern(initialPattern) ? initialPattern : '>';
    this.input.value = this.pattern;
    byId<HTMLFormElement>('tail-form').addEventListener('submit', (event) => {
      event.preventDefault();
      void this.setFilter(this.input.value.trim());
    });
    for (const preset of document.querySelectorAll<HTMLButtonElement>('[data-pattern]')) {
      preset.addEventListener('click', () => {
        this.input.value = preset.dataset.pattern ?? '>';
        void this.setFilter(this.input.value);
      });
    }
    this.pauseButton.addEventListener('click', () => {
      if (this.log.paused) this.log.resume();
      else this.log.pause();
      this.changed();
    });
    byId('tail-clear').addEventListener('click', () => {
      this.log.clear();
      this.changed();
    });
  }

  start(): Promise<void> {
    return this.follow(this.pattern);
  }

  private async setFilter(pattern: string): Promise<void> {
    if (!isValidPattern(pattern)) {
      this.input.setAttribute('aria-invalid', 'true');
      this.showProblem(`${JSON.stringify(pattern)} is not a pattern: dot-separated words, * for one word, > at the end for the rest`);
      return;
    }
    this.input.removeAttribute('aria-invalid');
    if (pattern === this.pattern) return;
    const previous = this.pattern;
    this.pattern = pattern;
    this.changed();
    void this.bus.unsubscribe(previous, this.receive).catch(() => undefined);
    await this.follow(pattern);
  }

  private async follow(pattern: string): Promise<void> {
    this.showProblem(null);
    try {
      await this.bus.subscribe(pattern, this.receive);
      this.followed();
      const earlier = await this.earlier(pattern).catch(() => []);
      if (pattern !== this.pattern || earlier.length === 0) return;
      this.log.addEarlier(earlier);
      this.changed();
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (pattern !== this.pattern) return;
      this.showProblem(code === 'FORBIDDEN'
        ? `this token may not subscribe to ${pattern}: try a narrower pattern it allows`
        : `could not subscribe to ${pattern}: ${(err as Error).message}`);
    }
  }

  private showProblem(message: string | null): void {
    setText(this.problem, message ?? '');
    this.problem.hidden = message === null;
  }

  render(): void {
    const entries = this.log.visible(this.pattern, SHOWN);
    syncKeyed(this.list, entries, (entry) => String(entry.seq), (entry) => this.createEntry(entry), () => undefined);
    this.empty.hidden = entries.length > 0;
    setText(this.pauseButton, this.log.paused ? `Resume${this.log.unseen > 0 ? ` (${this.log.unseen} new)` : ''}` : 'Pause');
    this.pauseButton.setAttribute('aria-pressed', String(this.log.paused));
    setText(this.status, `${entries.length} shown · ${this.log.size}/${this.log.capacity} kept${this.log.paused ? ' · paused' : ''}`);
  }

  /** An event never changes: its row is filled once. */
  private createEntry({ event }: TailEntry): HTMLLIElement {
    return h('li', { attrs: { 'data-type': event.type } },
      h('time', { class: 'time', text: clock(new Date(event.timestamp)), attrs: { datetime: event.timestamp } }),
      h('span', { class: 'type', text: event.type }),
      h('span', { class: 'source', text: event.source }),
      h('code', { class: 'payload', text: preview(event.payload, PAYLOAD_CHARS), title: preview(event.payload, 4000) }));
  }
}
