import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { YoungGenerationTrim, type YoungGeneration } from '../src/young-generation-trim.js';

const MB = 1024 * 1024;

/** A trim on a young generation the test sets, counting its collections. */
function harness(start: YoungGeneration) {
  const young = { ...start };
  let collections = 0;
  const trim = new YoungGenerationTrim({
    read: () => ({ ...young }),
    collect: () => {
      collections++;
      young.used = 0;
    },
  });
  return { young, trim, collections: () => collections };
}

t.test('a grown young generation in a quiet process: a minor GC at most every 6 s', async (t) => {
  const { young, trim, collections } = harness({ size: 32 * MB, used: 10 * MB });
  young.used += 10 * 1024;
  t.equal(trim.tick(500), true, 'the first quiet look collects');
  for (let now = 1_000; now < 6_500; now += 500) {
    young.used += 10 * 1024;
    t.equal(trim.tick(now), false, `nothing at ${now} ms`);
  }
  young.used += 10 * 1024;
  t.equal(trim.tick(6_500), true, 'again once V8 has seen more than 5 quiet seconds');
  t.equal(collections(), 2);
});

t.test('a young generation V8 doubled to 8 MB counts as grown, one of 4 MB does not', async (t) => {
  const grown = harness({ size: 8 * MB, used: 0 });
  t.equal(grown.trim.tick(500), true, 'collected at 8 MB');
  const small = harness({ size: 4 * MB, used: 0 });
  t.equal(small.trim.tick(500), false, 'left alone at 4 MB');
});

t.test('under load, or once V8 has shrunk it, nothing is collected', async (t) => {
  const { young, trim, collections } = harness({ size: 32 * MB, used: 0 });
  for (let now = 500; now <= 20_000; now += 500) {
    young.used += 1 * MB;
    if (young.used > 16 * MB) young.used -= 16 * MB; // V8's own scavenges
    trim.tick(now);
  }
  t.equal(collections(), 0, 'allocation of 2 MB a second, and V8 collecting on its own');
  young.size = 1 * MB;
  for (let now = 20_500; now <= 40_000; now += 500) trim.tick(now);
  t.equal(collections(), 0, 'a young generation already small');
});

t.test('a young generation V8 grew is given back within seconds of a burst', async (t) => {
  const trimModule = fileURLToPath(new URL('../dist/src/young-generation-trim.js', import.meta.url));
  // A burst of objects that survive their first GCs, as a start-up or a wave
  // of handshakes makes, grows it; then the process goes quiet.
  const script = `
    import { getHeapSpaceStatistics } from 'node:v8';
    import { YoungGenerationTrim } from ${JSON.stringify(trimModule)};
    const young = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
    let kept = [];
    for (let i = 0; i < 400000; i++) kept.push({ i });
    kept = null;
    const grown = young();
    new YoungGenerationTrim().start();
    const started = performance.now();
    const look = setInterval(() => {
      const elapsedMs = performance.now() - started;
      // Until it is small again: V8 may shrink it part of the way on its own first.
      if (young() > 2 * 1024 * 1024 && elapsedMs < 20000) return;
      clearInterval(look);
      console.log(JSON.stringify({ grown, after: young(), elapsedMs }));
    }, 100);
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 });
  const { grown, after, elapsedMs } = JSON.parse(stdout) as { grown: number; after: number; elapsedMs: number };
  t.ok(grown >= 8 * MB, `the burst grew it (${(grown / MB).toFixed(0)} MB)`);
  t.ok(after <= 2 * MB, `given back: ${(after / MB).toFixed(0)} MB after ${Math.round(elapsedMs)} ms`);
  t.ok(elapsedMs < 20_000, 'within seconds, not at V8\'s memory reducer a minute later');
});
