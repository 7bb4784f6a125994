/** The state of one dependency, as `GET /health` reports it. */
export interface DependencyState {
  ok: boolean;
  required: boolean;
  detail?: string;
}

type Check = () => Promise<Omit<DependencyState, 'required'>> | Omit<DependencyState, 'required'>;

/** Each organ registers a check for what it depends on; `/health` asks them all. */
export class HealthRegistry {
  private readonly checks = new Map<string, { check: Check; required: boolean }>();

  /** `redact` cleans each detail: a driver's error may quote its URL, credentials and all. */
  constructor(private readonly redact: (text: string) => string = (text) => text) {}

  register(name: string, check: Check, required = true): void {
    this.checks.set(name, { check, required });
  }

  async report(): Promise<{ ok: boolean; dependencies: Record<string, DependencyState> }> {
    const dependencies: Record<string, DependencyState> = {};
    let ok = true;
    await Promise.all([...this.checks].map(async ([name, { check, required }]) => {
      let state: Omit<DependencyState, 'required'>;
      try {
        state = await check();
      } catch (err) {
        state = { ok: false, detail: (err as Error).message };
      }
      dependencies[name] = state.detail === undefined ? { ...state, required } : { ...state, detail: this.redact(state.detail), required };
      if (required && !state.ok) ok = false;
    }));
    return { ok, dependencies };
  }
}
