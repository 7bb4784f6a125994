/**
 * Summarizes a V8 CPU profile (`node --cpu-prof`): self time per function
 * and per package, the top of each. `skip` leaves out the first seconds
 * (the process starting: module loading) to see the steady state.
 *
 * Run: node dist/bench/profile-summary.js FILE.cpuprofile [top=25] [skip=0]
 */
import { readFileSync } from 'node:fs';
import { table } from './lib/report.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function packageOf(url: string): string {
  if (url === '') return '(native/V8)';
  if (url.startsWith('node:')) return 'node core';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  const dist = url.indexOf('/dist/');
  return dist >= 0 ? `brainstem ${url.slice(dist + 6).split('/').slice(0, -1).join('/')}` : url;
}

const [file, topArg, skipArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: node dist/bench/profile-summary.js FILE.cpuprofile [top] [skip seconds]\n');
  process.exit(2);
}
const top = Number(topArg ?? 25);
const skipMicros = Number(skipArg ?? 0) * 1e6;
const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfMicros = new Map<number, number>();
let elapsed = 0;
let total = 0;
profile.samples.forEach((id, i) => {
  const delta = profile.timeDeltas[i] ?? 0;
  elapsed += delta;
  if (elapsed < skipMicros) return;
  total += delta;
  selfMicros.set(id, (selfMicros.get(id) ?? 0) + delta);
});

let idle = 0;
const byFunction = new Map<string, number>();
const byPackage = new Map<string, number>();
for (const [id, micros] of selfMicros) {
  const node = byId.get(id);
  if (!node) continue;
  const { functionName, url, lineNumber } = node.callFrame;
  if (functionName === '(idle)') {
    idle += micros;
    continue;
  }
  const file = url.split('/').slice(-2).join('/');
  const key = `${functionName || '(anonymous)'} ${file}:${lineNumber + 1}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + micros);
  byPackage.set(packageOf(url), (byPackage.get(packageOf(url)) ?? 0) + micros);
}

const busy = total - idle;
const pct = (micros: number, of: number) => `${((micros / of) * 100).toFixed(1)}%`;
const rows = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top)
  .map(([name, micros]) => [name, `${(micros / 1000).toFixed(0)} ms`, pct(micros, busy)]);

process.stdout.write(`${file}: ${(total / 1e6).toFixed(1)} s profiled${skipMicros ? ` after the first ${skipMicros / 1e6} s` : ''}, ${pct(busy, total)} busy\n\n`);
process.stdout.write(`${table(['self time by package', 'ms', '% of busy'], rows(byPackage))}\n\n`);
process.stdout.write(`${table(['self time by function', 'ms', '% of busy'], rows(byFunction))}\n`);
