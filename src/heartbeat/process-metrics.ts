import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import pidusage from 'pidusage';

/** What the original service stored per beat: cpu %, memory bytes, network bytes. */
export interface ProcessMetrics {
  cpu: number;
  memory: number;
  netRx: number;
  netTx: number;
}

export interface ProcessSample {
  metrics: ProcessMetrics;
  /** Milliseconds since the process started, when it could be read. */
  elapsedMs: number | null;
}

export const NO_METRICS: ProcessMetrics = Object.freeze({ cpu: 0, memory: 0, netRx: 0, netTx: 0 });

/**
 * Sums received and sent bytes over every interface in a `/proc/PID/net/dev`
 * text, as the original did. The interface name is split off at its colon,
 * because large counters can run into it (`eth0:123456`).
 */
export function parseNetDev(text: string): { netRx: number; netTx: number } {
  let netRx = 0;
  let netTx = 0;
  for (const line of text.trim().split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const fields = line.slice(colon + 1).trim().split(/\s+/);
    if (fields.length < 16) continue;
    netRx += Number.parseInt(fields[0] as string, 10) || 0;
    netTx += Number.parseInt(fields[8] as string, 10) || 0;
  }
  return { netRx, netTx };
}

/** cpu and memory from pidusage, network bytes from /proc; a part that cannot be read stays 0. */
export async function sampleProcess(pid: number): Promise<ProcessSample> {
  const metrics: ProcessMetrics = { ...NO_METRICS };
  let elapsedMs: number | null = null;
  try {
    const usage = await pidusage(pid);
    metrics.cpu = usage.cpu;
    metrics.memory = usage.memory;
    elapsedMs = usage.elapsed;
  } catch {
    // The process is gone or not readable: the beat still counts.
  }
  try {
    Object.assign(metrics, parseNetDev(await readFile(`/proc/${pid}/net/dev`, 'utf8')));
  } catch {
    // No network namespace to read: the original ignored this too.
  }
  return { metrics, elapsedMs };
}

/** The identity of a running process: pid plus the kernel's start time. */
export interface ProcessIdentity {
  /** Field 22 of /proc/PID/stat: clock ticks after boot when it started. */
  startTime: string;
  /** Field 3: R, S, D, Z (zombie), T, ... */
  state: string;
}

/**
 * Reads a process's start time. A pid is reused by the kernel, a pid plus
 * its start time is not, so this is what makes a stop safe. Null when
 * there is no such process or it has already exited (a zombie).
 */
export async function readProcessIdentity(pid: number): Promise<ProcessIdentity | null> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: fields
  // after it are counted from its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || startTime === undefined || !/^\d+$/.test(startTime)) return null;
  if (state === 'Z' || state === 'X') return null;
  return { startTime, state };
}

/** True for a peer on this machine: 127.0.0.0/8 and ::1, IPv4-mapped included. */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const plain = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (isIP(plain) === 4) return plain.startsWith('127.');
  return plain === '::1';
}

/** Forgets pidusage's per-pid history (and its timer) when the organ closes. */
export function forgetProcessSamples(): void {
  pidusage.clear();
}
