import contract from '../../clients/contract.json' with { type: 'json' };

/**
 * Every default of the client, read from the client contract
 * (clients/contract.json), which the Python client loads too; the
 * conformance scenario 20-defaults checks that both use what it says.
 */
export interface ContractRow {
  name: string;
  value: number | boolean | string[];
  unit: string;
  typescript: string | null;
  python: string | null;
  meaning: string;
}

/** The contract's rows, by name. */
export const CONTRACT: ReadonlyMap<string, ContractRow> = new Map((contract.rows as ContractRow[]).map((row) => [row.name, row]));

function row(name: string): ContractRow['value'] {
  const found = CONTRACT.get(name);
  if (!found) throw new Error(`clients/contract.json has no row ${name}`);
  return found.value;
}

const ms = (name: string): number => row(name) as number;

const DEFAULTS = Object.freeze({
  reconnect: Object.freeze({
    initialDelayMs: ms('reconnectInitialDelayMs'),
    maxDelayMs: ms('reconnectMaxDelayMs'),
  }),
  maxBufferedFrames: row('maxBufferedFrames') as number,
  receiptTimeoutMs: ms('receiptTimeoutMs'),
  requestTimeoutMs: ms('requestTimeoutMs'),
  keepaliveMs: ms('keepaliveMs'),
  connectTimeoutMs: ms('connectTimeoutMs'),
  maxFrameBytes: row('maxFrameBytes') as number,
  traceTasks: row('traceTasks') as boolean,
});

export type ClientDefaults = {
  reconnect: { initialDelayMs: number; maxDelayMs: number };
  maxBufferedFrames: number;
  receiptTimeoutMs: number;
  requestTimeoutMs: number;
  keepaliveMs: number;
  connectTimeoutMs: number;
  maxFrameBytes: number;
  traceTasks: boolean;
};

/** The defaults of every option, as one table (a fresh copy each call, as nats.js's defaultOptions()). */
export function defaultOptions(): ClientDefaults {
  return { ...DEFAULTS, reconnect: { ...DEFAULTS.reconnect } };
}

/** A connection that lasted this long was healthy: the next reconnect starts from the first delay. */
export const STABLE_CONNECTION_MS = ms('stableConnectionMs');
/** How long close() waits for the gateway's close frame. */
export const CLOSE_GRACE_MS = ms('closeGraceMs');
/** A server that sends no welcome frame (not this gateway) counts as connected after this long. */
export const WELCOME_WAIT_MS = ms('welcomeWaitMs');
/** A refused pull (store down, rate limited) is asked again after this long, doubling per refusal in a row… */
export const PULL_RETRY_INITIAL_MS = ms('pullRetryInitialMs');
/** …up to this long. */
export const PULL_RETRY_MAX_MS = ms('pullRetryMaxMs');

/** The wait before a pull is asked again, after `refusedInRow` refusals before this one. */
export function pullRetryDelayMs(refusedInRow: number): number {
  return Math.min(PULL_RETRY_MAX_MS, PULL_RETRY_INITIAL_MS * 2 ** Math.min(refusedInRow, 30));
}
/** The refusals of a pull worth asking again. */
export const PULL_RETRY_CODES: ReadonlySet<string> = new Set(row('pullRetryCodes') as string[]);
export const HELD_RECEIPT_ACTIONS: ReadonlySet<string> = new Set(row('heldReceiptActions') as string[]);

let processPid: number | null = null;

/** The Node entry sets the process id sent as `?pid=` (browsers have none to send). */
export function setProcessPid(pid: number): void {
  processPid = pid;
}

export function defaultPid(): number | null {
  return processPid;
}
