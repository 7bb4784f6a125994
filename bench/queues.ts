/**
 * Q1 alone: npm run build && node dist/bench/queues.js [--rounds 3] [--quick] [--profile DIR]
 * [--previous-gateway FILE]
 * (--profile writes a V8 CPU profile of each gateway run into DIR; read it
 * with node dist/bench/profile-summary.js FILE; --previous-gateway runs another
 * build's server.js as a third side in the same rounds). The scenario itself is
 * bench/scenarios/queues.ts, which `npm run bench` runs with the others.
 */
import { parseArgs } from 'node:util';
import { runQueueBench } from './scenarios/queues.js';

const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '3' }, quick: { type: 'boolean', default: false }, profile: { type: 'string' }, 'previous-gateway': { type: 'string' } },
});
const profile = values.profile ? { profileDir: values.profile } : {};
const previous = values['previous-gateway'] ? { previousGateway: values['previous-gateway'] } : {};
runQueueBench({ rounds: Number(values.rounds), quick: values.quick, ...profile, ...previous }).catch((err: unknown) => {
  process.stderr.write(`queue bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
