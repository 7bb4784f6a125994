import type { HeartbeatRecord } from './heartbeat-store.js';
import { readProcessIdentity } from './process-metrics.js';

export interface StopSettings {
  /** Stop stale local services; false: only report them. */
  stopEnabled: boolean;
  /** ms between SIGTERM and SIGKILL. */
  stopGraceMs: number;
}

export interface StopperLog {
  warn(obj: object, msg: string): void;
}

/** What came of a stop: SIGTERM sent, or why the process was left alone. */
export type StopOutcome = { action: 'stopped' } | { action: 'reported'; reason: string };

function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException)?.code ?? (err as Error)?.message ?? String(err);
}

/**
 * Stops a quiet service's process only when that is safe: stopping is
 * enabled, the beats came from this machine, the pid is not pid 1, the
 * gateway, its parent or a protected one, the pid was proven to hold the
 * beat's socket (no one gets another process killed by naming its pid),
 * and it still has the start time of its first beat (a reused pid never
 * gets a stranger killed). SIGTERM first, SIGKILL after the grace period
 * if the very same process is still there.
 */
export class ProcessStopper {
  private readonly killTimers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(
    private readonly settings: StopSettings,
    private readonly log: StopperLog,
    private readonly protectedPids: () => Iterable<number | undefined> = () => [],
  ) {}

  async stop(record: HeartbeatRecord): Promise<StopOutcome> {
    const refusal = await this.whyNotStop(record);
    if (refusal !== null) return { action: 'reported', reason: refusal };
    try {
      process.kill(record.pid, 'SIGTERM');
    } catch (err) {
      return { action: 'reported', reason: `signal failed: ${errorCode(err)}` };
    }
    this.escalate(record.pid, record.name, record.startTime as string);
    return { action: 'stopped' };
  }

  /** Ends the pending SIGKILLs. */
  close(): void {
    this.closed = true;
    for (const timer of this.killTimers) clearTimeout(timer);
    this.killTimers.clear();
  }

  /** Null when the record's process may be stopped now; otherwise why not. */
  private async whyNotStop(record: HeartbeatRecord): Promise<string | null> {
    if (!this.settings.stopEnabled) return 'stopping disabled';
    if (!record.local) return 'not local';
    const protectedPids = new Set<number | undefined>([1, process.pid, process.ppid, ...this.protectedPids()]);
    if (protectedPids.has(record.pid)) return 'protected pid';
    if (!record.proven) return 'unverified pid';
    if (record.startTime === null) return 'start time unknown';
    const identity = await readProcessIdentity(record.pid);
    if (identity === null) return 'already exited';
    if (identity.startTime !== record.startTime) return 'pid reused';
    return null;
  }

  private escalate(pid: number, name: string, startTime: string): void {
    const timer = setTimeout(() => {
      this.killTimers.delete(timer);
      void readProcessIdentity(pid).then((identity) => {
        if (this.closed || identity?.startTime !== startTime) return;
        try {
          process.kill(pid, 'SIGKILL');
          this.log.warn({ pid, name, graceMs: this.settings.stopGraceMs }, 'service ignored SIGTERM: SIGKILL sent');
        } catch (err) {
          this.log.warn({ pid, name, err: errorCode(err) }, 'SIGKILL failed');
        }
      });
    }, this.settings.stopGraceMs);
    timer.unref();
    this.killTimers.add(timer);
  }
}
