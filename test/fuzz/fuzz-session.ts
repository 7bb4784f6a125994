import fc from 'fast-check';
import { fuzzRun, rssOf, type Findings, type FuzzTarget } from './frame-fuzzer.js';
import { fuzzHttp, httpRequest, roundTrip } from './http-fuzzer.js';
import { stepsOf } from './hostile-values.js';

/**
 * The gateway under fuzzing runs its timers (stalled check, eviction) every
 * tenth of a second, so that their work on what the frames left behind is
 * fuzzed too, not only the frames' own paths.
 */
export const FUZZ_GATEWAY_ENV = { LOG_LEVEL: 'error', QUEUE_STALLED_CHECK_MS: '100', QUEUE_IDLE_MS: '100' };

export interface FuzzOptions {
  /** Frames to send in all (runs of up to `stepsPerRun`). */
  frames: number;
  seed: number;
  connections?: number;
  stepsPerRun?: number;
  /** Called after every run with the frames sent so far. */
  progress?(sent: number): void;
}

export interface FuzzReport {
  seed: number;
  runs: number;
  frames: number;
  httpRequests: number;
  ms: number;
  rssStart: number;
  rssEnd: number;
  /** Empty when the gateway held; else fast-check's report: seed, path and the shrunk counterexample. */
  failure: string | null;
}

/**
 * Runs fast-check over runs of frames and HTTP requests against a real
 * gateway process: after each run, the properties of `fuzzRun` and a
 * round trip. A failure is shrunk to a small counterexample, printed with
 * the seed that replays it (`npm run fuzz -- --seed S`).
 */
export async function fuzz(target: FuzzTarget, options: FuzzOptions): Promise<FuzzReport> {
  const connections = options.connections ?? 3;
  const stepsPerRun = options.stepsPerRun ?? 200;
  const runs = Math.max(1, Math.ceil(options.frames / (stepsPerRun / 2)));
  let frames = 0;
  let httpRequests = 0;
  let ran = 0;
  const started = Date.now();
  await roundTrip(target, 0);
  const rssStart = rssOf(target.pid);
  const property = fc.asyncProperty(
    stepsOf(connections, stepsPerRun),
    fc.array(httpRequest, { maxLength: 8 }),
    async (steps, requests) => {
      frames += steps.length;
      httpRequests += requests.length;
      const findings: Findings = [
        ...await fuzzRun(target, connections, steps),
        ...await fuzzHttp(target, requests),
        ...await roundTrip(target, ++ran),
      ];
      options.progress?.(frames);
      if (findings.length > 0) throw new Error(findings.slice(0, 5).join('\n'));
    },
  );
  const details = await fc.check(property, { seed: options.seed, numRuns: runs, endOnFailure: false });
  return {
    seed: options.seed,
    runs: ran,
    frames,
    httpRequests,
    ms: Date.now() - started,
    rssStart,
    rssEnd: rssOf(target.pid),
    failure: details.failed ? `${fc.defaultReportMessage(details) ?? 'failed'}\n${String((details.errorInstance as Error | undefined)?.message ?? '')}` : null,
  };
}
