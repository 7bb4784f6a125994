/**
 * Heartbeat client for posting a process id to the gateway's heartbeat
 * organ, the TypeScript successor of the user's `HeartbeatClient` with the
 * same options (`url`, `pid`, `name`, `interval`, `onHeartbeat`) and
 * defaults. It needs nothing but `fetch`, so services (and the service
 * template) can import it anywhere.
 */

/** What the gateway answers to an accepted beat. */
export interface HeartbeatReply {
  status: 'ok';
  pid: number;
  name: string;
  cpu: number;
  memory: number;
  netRx: number;
  netTx: number;
}

export interface HeartbeatClientOptions {
  /** Default `http://127.0.0.1:${PROXY_PORT || 8080}/heartbeat/heartbeat`. */
  url?: string;
  /** Default this process's pid. */
  pid?: number;
  /** Default the `name` environment variable (PM2 sets it per app). */
  name?: string;
  /** ms between beats; default 3000. */
  interval?: number;
  /** Called with the gateway's reply after each accepted beat. */
  onHeartbeat?: (reply: HeartbeatReply) => void;
  /** Called when a beat fails (the original ignored failures silently). */
  onError?: (err: Error) => void;
  /** Sent as `Authorization: Bearer` when the gateway has tokens configured. */
  token?: string;
}

function environment(): Record<string, string | undefined> {
  return typeof process !== 'undefined' && process.env ? process.env : {};
}

export class HeartbeatClient {
  readonly url: string;
  readonly pid: number;
  readonly name: string;
  readonly interval: number;
  onHeartbeat: ((reply: HeartbeatReply) => void) | undefined;
  onError: ((err: Error) => void) | undefined;
  private readonly token: string | undefined;
  private timer: ReturnType<typeof setInterval> | null = null;
  private inFlight = false;

  constructor(options: HeartbeatClientOptions = {}) {
    const env = environment();
    this.url = options.url ?? `http://127.0.0.1:${env.PROXY_PORT || 8080}/heartbeat/heartbeat`;
    const pid = options.pid ?? (typeof process !== 'undefined' ? process.pid : undefined);
    const name = options.name ?? env.name;
    this.interval = options.interval ?? 3000;
    this.onHeartbeat = options.onHeartbeat;
    this.onError = options.onError;
    this.token = options.token;
    if (!name) throw new Error('name required for HeartbeatClient');
    if (pid === undefined) throw new Error('pid required for HeartbeatClient');
    this.name = name;
    this.pid = pid;
  }

  /** One beat; resolves with the reply, rejects with the gateway's error. */
  async sendOnce(): Promise<HeartbeatReply> {
    const headers: Record<string, string> = { 'Content-Type': 'application/json' };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const res = await fetch(this.url, {
      method: 'POST',
      headers,
      body: JSON.stringify({ pid: this.pid, name: this.name }),
      // A beat that takes longer than a beat period is a failed beat.
      signal: AbortSignal.timeout(Math.max(this.interval, 1000)),
    });
    if (!res.ok) {
      const body = await res.json().catch(() => null) as { error?: unknown } | null;
      const detail = typeof body?.error === 'string' ? `: ${body.error}` : '';
      throw new Error(`heartbeat failed with status ${res.status}${detail}`);
    }
    return res.json() as Promise<HeartbeatReply>;
  }

  /** Beats now and then every `interval` ms, until `stop()`. */
  start(): void {
    if (this.timer) return;
    const tick = async () => {
      // A slow gateway gets one beat at a time, not a pile of them.
      if (this.inFlight) return;
      this.inFlight = true;
      try {
        const reply = await this.sendOnce();
        this.onHeartbeat?.(reply);
      } catch (err) {
        this.onError?.(err as Error);
      } finally {
        this.inFlight = false;
      }
    };
    this.timer = setInterval(tick, this.interval);
    // The heartbeat alone does not keep a finished service running.
    (this.timer as { unref?: () => void }).unref?.();
    void tick();
  }

  stop(): void {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}
