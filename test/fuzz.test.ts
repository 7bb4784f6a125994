import t from 'tap';
import { fuzz, FUZZ_GATEWAY_ENV } from './fuzz/fuzz-session.js';
import { spawnGatewayProcess } from './helpers/process.js';
import { startRedis } from './helpers/redis.js';

// A short fuzzing run on every `npm test`: frames and HTTP requests with
// hostile values against a real gateway process on real Redis. Longer
// runs: `npm run fuzz -- --frames N --seed S`. Every counterexample found
// becomes a plain test (hostile-names.test.ts).
const frames = Number(process.env.FUZZ_FRAMES ?? 3000);
const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

const redis = await startRedis(t);
const gateway = await spawnGatewayProcess(t, redis.url, FUZZ_GATEWAY_ENV);

t.test(`the gateway holds against ${frames} hostile frames (seed ${seed})`, async (t) => {
  const report = await fuzz({ ...gateway, pid: gateway.child.pid as number }, { frames, seed });
  t.equal(report.failure, null, `replay with: npm run fuzz -- --frames ${frames} --seed ${seed}`);
  t.equal(gateway.child.exitCode, null, 'the same process serves');
  t.ok(report.frames >= frames / 2, `${report.frames} frames sent`);
  // Queues and connections the run opened cost some memory; a leak per frame would cost far more.
  t.ok(report.rssEnd - report.rssStart < 96 * 2 ** 20, `RSS ${Math.round(report.rssStart / 2 ** 20)} → ${Math.round(report.rssEnd / 2 ** 20)} MB`);
});
