import t from 'tap';
import { EvictionGc } from '../src/eviction-gc.js';

t.test('a major GC once thousands of queues were evicted and evictions stopped, not for a few, and not again within a minute', async (t) => {
  let live = 0;
  let collected = 0;
  const gc = new EvictionGc({ live: () => live, collect: () => collected++ });
  live = 10_000;
  t.notOk(gc.tick(0), 'queues opening: nothing');
  live = 9_500;
  t.notOk(gc.tick(1000), 'five hundred evicted: nothing');
  live = 8_900;
  t.notOk(gc.tick(2000), 'over a thousand evicted, still falling: not yet');
  live = 3_000;
  t.notOk(gc.tick(3000), 'still falling');
  t.ok(gc.tick(4000), 'no longer falling, far below the peak: collected');
  live = 0;
  t.notOk(gc.tick(5000), 'the rest evicted');
  t.notOk(gc.tick(6000), 'within the minute: V8 is left to it');
  t.ok(gc.tick(65_000), 'a minute on, still far below the last look: collected');
  t.equal(collected, 2);
});

t.test('with the real GC, a look that collects runs and the process goes on', async (t) => {
  let live = 2000;
  const gc = new EvictionGc({ live: () => live });
  live = 0;
  t.notOk(gc.tick(0), 'just evicted');
  t.ok(gc.tick(1000));
});
