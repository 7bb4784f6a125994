import { byId, setText } from './dom.js';

/**
 * One card of the page: its note (what this token may not see or do) and
 * its state line (when the data is from, or why it could not be fetched).
 */
export class Section {
  private readonly note: HTMLElement;
  private readonly state: HTMLElement;
  private readonly notes = new Map<string, string>();

  constructor(readonly id: string) {
    this.note = byId(`${id}-note`);
    this.state = byId(`${id}-state`);
  }

  /** Adds (or, with null, removes) one note under `key`. */
  setNote(key: string, message: string | null): void {
    if (message === null) this.notes.delete(key);
    else this.notes.set(key, message);
    setText(this.note, [...this.notes.values()].join(' '));
    this.note.hidden = this.notes.size === 0;
  }

  fetched(): void {
    setText(this.state, '');
    this.state.removeAttribute('data-problem');
  }

  failed(message: string): void {
    setText(this.state, message);
    this.state.setAttribute('data-problem', '');
  }
}
