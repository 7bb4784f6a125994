import type { BeatRecord } from './heartbeat-store.js';

type Metric = 'cpu' | 'memory';

/** The limits past which a beat's figures are warned of; 0: never. */
export interface WarnThresholds {
  warnCpuPercent: number;
  warnMemoryBytes: number;
}

/**
 * `heartbeat.warn` once per crossing: per pid, the thresholds its last
 * beat was over, so a process that stays over them is warned of once.
 */
export class ThresholdWarnings {
  private readonly over = new Map<number, Set<Metric>>();

  constructor(private readonly thresholds: WarnThresholds, private readonly warn: (payload: object) => void) {}

  beat(record: BeatRecord): void {
    const { warnCpuPercent, warnMemoryBytes } = this.thresholds;
    const over = this.over.get(record.pid) ?? new Set<Metric>();
    const checks = [
      { metric: 'cpu' as const, value: record.cpu, threshold: warnCpuPercent },
      { metric: 'memory' as const, value: record.memory, threshold: warnMemoryBytes },
    ];
    for (const { metric, value, threshold } of checks) {
      if (threshold > 0 && value > threshold) {
        if (over.has(metric)) continue;
        over.add(metric);
        this.warn({ pid: record.pid, name: record.name, metric, value, threshold, cpu: record.cpu, memory: record.memory });
      } else {
        over.delete(metric);
      }
    }
    if (over.size > 0) this.over.set(record.pid, over);
    else this.over.delete(record.pid);
  }

  /** The process is down: its next life starts under no threshold. */
  forget(pid: number): void {
    this.over.delete(pid);
  }
}
