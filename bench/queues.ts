/**
 * Q1 alone: npm run build && node dist/bench/queues.js [--rounds 3] [--quick] [--profile DIR]
 * (--profile writes a V8 CPU profile of each gateway run into DIR; read it
 * with node dist/bench/profile-summary.js FILE). The scenario itself is
 * bench/scenarios/queues.ts, which `npm run bench` runs with the others.
 */
import { parseArgs } from 'node:util';
import { runQueueBench } from './scenarios/queues.js';

const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '3' }, quick: { type: 'boolean', default: false }, profile: { type: 'string' } },
});
const profile = values.profile ? { profileDir: values.profile } : {};
runQueueBench({ rounds: Number(values.rounds), quick: values.quick, ...profile }).catch((err: unknown) => {
  process.stderr.write(`queue bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
