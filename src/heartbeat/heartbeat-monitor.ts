import { BusError } from '../bus/protocol.js';
import {
  StoreUnavailableError, storeCall, type BeatRecord, type HeartbeatRecord, type HeartbeatStore,
} from './heartbeat-store.js';
import { MAX_SERVICE_NAME_BYTES, nameProblem, quoted } from '../protocol/names.js';
import type { InstanceLimits } from './instance-limits.js';
import { LiveServices, type ServiceTransition } from './live-services.js';
import { ProcessStopper, type StopSettings } from './process-stopper.js';
import { StoreHearing, type StoreOutage } from './store-hearing.js';
import { ThresholdWarnings, type WarnThresholds } from './threshold-warnings.js';
import {
  isLoopback, NO_METRICS, readProcessIdentity, sampleProcess, type ProcessMetrics, type ProcessSample,
} from './process-metrics.js';

/** warnCpuPercent and warnMemoryBytes: the figures past which `heartbeat.warn` is published (0: never). */
export interface HeartbeatSettings extends WarnThresholds, StopSettings {
  /** ms without a beat before a service is stale. */
  timeoutMs: number;
  /** ms between two checks for stale services. */
  checkIntervalMs: number;
}

export type HeartbeatEventType = 'heartbeat.ping' | 'heartbeat.down' | 'heartbeat.warn' | 'service.up' | 'service.down';

/** The few logger methods the monitor uses (pino's signature). */
export interface MonitorLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface HeartbeatMonitorOptions {
  store: HeartbeatStore;
  /** This boot of the gateway: records it received are marked stopped when it closes. */
  sessionId: string;
  settings: HeartbeatSettings;
  limits: InstanceLimits;
  /** Pids that are never signalled (pid 1 and the gateway are always added). */
  protectedPids?: () => Iterable<number | undefined>;
  publish(type: HeartbeatEventType, payload: object): void;
  /**
   * A record went stale and this gateway took it down, stopped or only
   * reported: what depends on the process (its linked bus connections)
   * lets go of it. Runs before `heartbeat.down` is published.
   */
  onDown?(report: DownReport): void;
  log: MonitorLog;
}

/** Where a beat came from. */
export interface BeatOrigin {
  /** The peer's address: loopback means this machine. */
  remoteAddress: string | undefined;
  /** Resolves true when `pid` holds the other end of the beat's connection (socket-owner.ts); absent: never proven. */
  provePid?(pid: number): Promise<boolean>;
}

export type HeartbeatStatus = 'alive' | 'stale' | 'stopped';
export type RecordWithStatus = HeartbeatRecord & { status: HeartbeatStatus };

/** The original service's answer to an accepted beat. */
export interface BeatReply extends ProcessMetrics {
  status: 'ok';
  pid: number;
  name: string;
}

export interface DownReport {
  pid: number;
  name: string;
  last: number;
  action: 'stopped' | 'reported';
  /** Why it was only reported (e.g. `unverified pid`); absent when it was stopped. */
  reason?: string;
}

/** Largest pid Linux hands out (PID_MAX_LIMIT on 64-bit). */
const MAX_PID = 4_194_304;

/** A pid as the original accepted it (a number or digits), or null. */
export function parsePid(value: unknown): number | null {
  const pid = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  return typeof pid === 'number' && Number.isInteger(pid) && pid > 0 && pid <= MAX_PID ? pid : null;
}

/** Why a beat's name cannot be taken (it keys the store and the instance limits), or null. */
function nameRefusal(value: string): string | null {
  if (value.trim() === '') return 'name is blank';
  const problem = nameProblem(value, MAX_SERVICE_NAME_BYTES);
  return problem === null ? null : `name ${problem}: ${quoted(value)}`;
}

export function statusOf(record: HeartbeatRecord, now: number, timeoutMs: number): HeartbeatStatus {
  if (record.killedAt !== undefined) return 'stopped';
  return now - record.last <= timeoutMs ? 'alive' : 'stale';
}

/**
 * The heartbeat organ's core, free of Fastify: accepts beats (limits,
 * metrics, the process's start time), finds services that went quiet and
 * stops them only when that is safe (ProcessStopper), and tells the system
 * through `publish`.
 */
export class HeartbeatMonitor {
  private readonly store: HeartbeatStore;
  private readonly settings: HeartbeatSettings;
  private checkTimer: NodeJS.Timeout | null = null;
  private readonly stopper: ProcessStopper;
  private checking: Promise<DownReport[]> | null = null;
  /** Per name, the beat being accepted: limits are counted one beat at a time. */
  private readonly beatsInFlight = new Map<string, Promise<unknown>>();
  private readonly warnings: ThresholdWarnings;
  /** Names with live instances here, for `service.up` / `service.down`. */
  private readonly liveServices = new LiveServices();
  private closed = false;
  private readonly hearing = new StoreHearing();

  constructor(private readonly options: HeartbeatMonitorOptions) {
    this.store = options.store;
    this.settings = options.settings;
    this.stopper = new ProcessStopper(options.settings, options.log, options.protectedPids);
    this.warnings = new ThresholdWarnings(options.settings, (payload) => options.publish('heartbeat.warn', payload));
  }

  get sessionId(): string {
    return this.options.sessionId;
  }

  /** Starts the periodic check for stale services. */
  start(): void {
    if (this.checkTimer || this.closed) return;
    this.checkTimer = setInterval(() => {
      this.check().catch((err: unknown) => this.options.log.error({ err }, 'heartbeat check failed'));
    }, this.settings.checkIntervalMs);
    this.checkTimer.unref();
  }

  /** The store's latest outage, or null when it never failed since the boot. */
  get storeOutage(): StoreOutage | null {
    return this.hearing.latestOutage;
  }

  /** Resolves when the store answers, rejects when it does not; either way noted as a beat's store call is. */
  async probeStore(): Promise<void> {
    try {
      await this.store.ping();
    } catch (err) {
      this.hearing.note(err);
      throw err;
    }
    this.hearing.note(null);
  }

  /**
   * One beat: `{pid, name}` from `origin`. Resolves with the original's
   * reply; rejects with a BusError (INVALID_FRAME, UNAVAILABLE, INSTANCE_LIMIT).
   */
  async beat(input: { pid: unknown; name: unknown }, origin: BeatOrigin): Promise<BeatReply> {
    const pid = parsePid(input.pid);
    const name = input.name;
    if (pid === null || typeof name !== 'string' || name === '') throw new BusError('INVALID_FRAME', 'pid and name required');
    const refusal = nameRefusal(name);
    if (refusal !== null) throw new BusError('INVALID_FRAME', refusal);
    // After close a beat would undo the session's stopped marks.
    if (this.closed) throw new BusError('UNAVAILABLE', 'heartbeat service shutting down');
    const local = isLoopback(origin.remoteAddress);
    // Cached per connection by the prover: a keep-alive client or a WebSocket pays for it once.
    const proven = local && origin.provePid !== undefined && await origin.provePid(pid).catch(() => false);
    const previous = this.beatsInFlight.get(name) ?? Promise.resolve();
    const accepted = previous.catch(() => undefined).then(() => this.accept(pid, name, local, proven));
    this.beatsInFlight.set(name, accepted);
    try {
      const reply = await accepted;
      this.hearing.note(null);
      return reply;
    } catch (err) {
      if (err instanceof StoreUnavailableError) {
        this.hearing.note(err);
        this.options.log.warn({ err: err.message, pid, name }, 'heartbeat refused: store unavailable');
        throw new BusError('UNAVAILABLE', 'db not available');
      }
      throw err;
    } finally {
      if (this.beatsInFlight.get(name) === accepted) this.beatsInFlight.delete(name);
    }
  }

  private async accept(pid: number, name: string, local: boolean, proven: boolean): Promise<BeatReply> {
    const { timeoutMs } = this.settings;
    const sessionId = this.options.sessionId;
    const existing = await this.store.get(pid);
    if (!existing || existing.sessionId !== sessionId) {
      const allowed = this.options.limits.get(name) ?? Infinity;
      if (Number.isFinite(allowed) && await this.store.countLive(name, sessionId, Date.now() - timeoutMs) >= allowed) {
        throw new BusError('INSTANCE_LIMIT', `instance limit exceeded for ${name}`);
      }
    }
    // Only the sender's own figures: a beat from another machine names a
    // pid that is not ours, and an unproven local one may name anyone's.
    const sample: ProcessSample = proven ? await sampleProcess(pid) : { metrics: { ...NO_METRICS }, elapsedMs: null };
    const startTime = local ? (await readProcessIdentity(pid))?.startTime ?? null : null;
    const now = Date.now();
    const sameProcess = existing !== null && existing.startTime === startTime && existing.name === name;
    const record: BeatRecord = {
      pid,
      last: now,
      name,
      sessionId,
      ...sample.metrics,
      startTime,
      local,
      proven,
      firstBeat: sameProcess ? existing.firstBeat : now,
    };
    await this.store.saveBeat(record);
    this.publishTransitions(this.liveServices.alive(pid, name));

    const uptime = Math.floor((sample.elapsedMs ?? now - record.firstBeat) / 1000);
    this.options.publish('heartbeat.ping', { ...record, uptime });
    this.warnings.beat(record);
    return { status: 'ok', pid, name, ...sample.metrics };
  }

  private publishTransitions(transitions: ServiceTransition[]): void {
    for (const { type, name } of transitions) this.options.publish(type, { name });
  }

  /** Whether an instance of `name` beat within the timeout and was not reported down since (synchronous: a route gate). */
  isAlive(name: string): boolean {
    return this.liveServices.isAlive(name);
  }

  /** Every record with its status; rejects with UNAVAILABLE when the store is down. */
  async list(now = Date.now()): Promise<RecordWithStatus[]> {
    let records: HeartbeatRecord[];
    try {
      records = await this.store.list();
    } catch (err) {
      this.hearing.note(err);
      this.options.log.warn({ err: (err as Error).message }, 'heartbeat list failed: store unavailable');
      throw new BusError('UNAVAILABLE', 'db not available');
    }
    return records.map((record) => ({ ...record, status: statusOf(record, now, this.settings.timeoutMs) }));
  }

  /**
   * One round: every record quiet for longer than the timeout is reported
   * down once, and stopped when that is safe and enabled. Rounds never
   * overlap; a round while one runs returns that round's reports.
   */
  check(now = Date.now()): Promise<DownReport[]> {
    if (this.closed) return Promise.resolve([]);
    this.checking ??= this.runCheck(now).finally(() => {
      this.checking = null;
    });
    return this.checking;
  }

  private async runCheck(now: number): Promise<DownReport[]> {
    if (!this.hearing.heardFor(now, this.settings.timeoutMs)) return [];
    let stale: HeartbeatRecord[];
    try {
      stale = await this.store.findStale(now - this.settings.timeoutMs);
    } catch (err) {
      this.hearing.note(err);
      this.options.log.warn({ err: (err as Error).message }, 'heartbeat check skipped: store unavailable');
      return [];
    }
    // Just back: give everyone a full timeout to be heard again.
    if (this.hearing.failing) {
      this.hearing.note(null);
      return [];
    }
    const reports: DownReport[] = [];
    for (const record of stale) {
      // A record another gateway received is that gateway's to take down:
      // the process's bus connections are linked there and lose their tasks
      // when it does. Gateways sharing the store step in a timeout later,
      // for a gateway that is gone.
      if (record.sessionId !== this.options.sessionId && now - record.last <= 2 * this.settings.timeoutMs) continue;
      try {
        const report = await this.takeDown(record, now);
        if (report) reports.push(report);
      } catch (err) {
        this.hearing.note(err);
        this.options.log.warn({ err: (err as Error).message, pid: record.pid }, 'heartbeat check: store unavailable');
        break;
      }
    }
    return reports;
  }

  private async takeDown(record: HeartbeatRecord, now: number): Promise<DownReport | null> {
    // Claim it first: if a beat arrived since the query, the beat wins.
    if (!await storeCall(() => this.store.markDown(record.pid, record.last, now))) return null;
    this.warnings.forget(record.pid);
    const { pid, name, last } = record;
    const report: DownReport = { pid, name, last, ...await this.stopper.stop(record) };
    if (report.action === 'stopped') {
      await this.store.markKilled(pid, now).catch((err: unknown) => {
        this.options.log.warn({ err: (err as Error).message, pid }, 'could not mark the stopped service killed');
      });
    }
    this.options.log[report.action === 'stopped' ? 'warn' : 'info'](
      { ...report, quietForMs: now - last },
      report.action === 'stopped' ? 'service went quiet: SIGTERM sent' : 'service went quiet: reported, not stopped',
    );
    try {
      this.options.onDown?.(report);
    } catch (err) {
      this.options.log.error({ err, pid }, 'heartbeat: releasing what the quiet process held failed');
    }
    this.options.publish('heartbeat.down', report);
    this.publishTransitions(this.liveServices.gone(pid));
    return report;
  }

  /**
   * Stops the checks and pending SIGKILLs, then marks this session's
   * records stopped, as the original's cleanup did.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.checkTimer) clearInterval(this.checkTimer);
    this.checkTimer = null;
    this.stopper.close();
    await this.checking?.catch(() => undefined);
    await Promise.allSettled([...this.beatsInFlight.values()]);
    try {
      const marked = await this.store.endSession(this.options.sessionId, Date.now());
      this.options.log.info({ sessionId: this.options.sessionId, marked }, 'heartbeat session ended');
    } catch (err) {
      this.options.log.warn({ err: (err as Error).message }, 'could not mark this session\'s heartbeat records stopped');
    }
  }
}
