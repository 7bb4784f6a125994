/**
 * `npm run fuzz -- --frames N --seed S [--connections C]`: a long fuzzing
 * run against a gateway process of this build on a Redis of its own;
 * prints the figures, and the counterexample with its seed on failure.
 */
import { parseArgs } from 'node:util';
import { spawnGatewayProcess } from '../helpers/process.js';
import { startRedis } from '../helpers/redis.js';
import { fuzz, FUZZ_GATEWAY_ENV } from './fuzz-session.js';

const { values } = parseArgs({
  options: {
    frames: { type: 'string', default: '200000' },
    seed: { type: 'string', default: String(Math.floor(Math.random() * 2 ** 31)) },
    connections: { type: 'string', default: '3' },
  },
});
const frames = Number(values.frames);
const seed = Number(values.seed);
const connections = Number(values.connections);

const teardowns: (() => unknown)[] = [];
const scope = { teardown: (fn: () => unknown) => teardowns.push(fn) };
let failed = true;
try {
  const redis = await startRedis(scope);
  const gateway = await spawnGatewayProcess(scope, redis.url, FUZZ_GATEWAY_ENV);
  const pid = gateway.child.pid as number;
  console.log(`fuzz: ${frames} frames, seed ${seed}, ${connections} connections, gateway pid ${pid}`);
  let reported = 0;
  const report = await fuzz({ ...gateway, pid }, {
    frames, seed, connections,
    progress(sent) {
      if (sent - reported >= 20_000) {
        reported = sent;
        console.log(`fuzz: ${sent} frames`);
      }
    },
  });
  const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
  console.log(JSON.stringify({
    seed, runs: report.runs, frames: report.frames, httpRequests: report.httpRequests, seconds: report.ms / 1000,
    framesPerSecond: Math.round(report.frames / (report.ms / 1000)), rssStartMB: mb(report.rssStart), rssEndMB: mb(report.rssEnd),
    samePid: gateway.child.exitCode === null,
  }));
  if (report.failure) console.log(`FAILED (replay: npm run fuzz -- --frames ${frames} --seed ${seed})\n${report.failure}`);
  failed = report.failure !== null || gateway.child.exitCode !== null;
} finally {
  for (const fn of teardowns.reverse()) await fn();
}
process.exit(failed ? 1 : 0);
