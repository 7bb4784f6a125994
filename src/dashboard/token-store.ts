/**
 * The token the dashboard uses, kept for the browser tab's session
 * (sessionStorage: closing the tab forgets it). A `?token=` in the page's
 * address is taken once — OBS browser sources cannot type — and removed
 * from the address bar so it does not linger in history or screenshots.
 */
const KEY = 'brainstem.dashboard.token';

export class TokenStore {
  constructor(private readonly storage: Storage) {}

  get(): string | null {
    return this.storage.getItem(KEY);
  }

  set(token: string): void {
    this.storage.setItem(KEY, token);
  }

  forget(): void {
    this.storage.removeItem(KEY);
  }

  /** Moves a `?token=` from the address into the store. */
  adoptFromAddress(location: Location, history: History): void {
    const url = new URL(location.href);
    const token = url.searchParams.get('token');
    if (token === null) return;
    if (token !== '') this.set(token);
    url.searchParams.delete('token');
    history.replaceState(history.state, '', url);
  }
}
