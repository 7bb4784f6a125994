import t from 'tap';
import { DEFAULT_RULES, patternsOverlap } from '../src/bus/history/retention-rules.js';
import { compareOffsets, parseOffset } from '../src/bus/history/offsets.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { parseEdgeConfig } from '../src/edge/edge-config.js';
import { startGateway } from './helpers/gateway.js';

function fileProblems(text: string): string {
  try {
    parseEdgeConfig(text, 'brainstem.config.json', '/tmp');
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error('the config was accepted');
}

t.test('BUS_HISTORY: rules with defaults filled in; each mistake in one line', async (t) => {
  t.same(loadConfig({ BUS_HISTORY: '[{"topics":"orders.>","maxAgeSeconds":60},{"topics":"fs.change","maxEvents":5}]' }).busHistory, [
    { topics: 'orders.>', maxEvents: 10_000, maxAgeSeconds: 60 },
    { topics: 'fs.change', maxEvents: 5, maxAgeSeconds: null },
  ]);
  t.same(loadConfig({ BUS_HISTORY: '[]' }).busHistory, [], '[] retains nothing');
  t.equal(loadConfig({}).busHistory, null, 'unset: the file\'s rules, else the defaults');
  const refused = (raw: string) => {
    try {
      loadConfig({ BUS_HISTORY: raw });
    } catch (err) {
      if (err instanceof ConfigError) return err.message;
      throw err;
    }
    throw new Error(`BUS_HISTORY=${raw} was accepted`);
  };
  t.equal(refused('queue.>'), 'BUS_HISTORY="queue.>": expected JSON: [{"topics": "queue.>", "maxEvents": 10000, "maxAgeSeconds": 86400}]');
  t.equal(refused('{"topics":"a"}'), 'BUS_HISTORY="{\\"topics\\":\\"a\\"}": expected a JSON array of {"topics", "maxEvents"?, "maxAgeSeconds"?}');
  t.match(refused('[{"topics":"a..b"}]'), /: \[0\]\.topics: "a\.\.b" is not a topic pattern/);
  t.match(refused('[{"topics":"a.>"},{"topics":"a.b"}]'), /: \[1\]\.topics: "a\.b" overlaps rule 0 \("a\.>"\): a topic may be retained by one rule only$/);
  t.match(refused('[{"topics":"a","maxEvents":0}]'), /: \[0\]\.maxEvents: expected a whole number from 1 to 10000000$/);
  t.match(refused('[{"topics":"a","maxAgeSeconds":"1h"}]'), /: \[0\]\.maxAgeSeconds: expected a whole number of seconds/);
  t.match(refused('[{"topics":"a","max":3}]'), /: \[0\]\.max: unknown field \(topics, maxEvents, maxAgeSeconds\)$/);
  t.match(refused('[{"maxEvents":3}]'), /: \[0\]\.topics: expected a topic pattern$/);
});

t.test('"history" in the config file: checked with the file\'s line', async (t) => {
  t.same(parseEdgeConfig('{"history": [{"topics": "queue.>", "maxEvents": 50}]}', 'f', '/tmp').history, [{ topics: 'queue.>', maxEvents: 50, maxAgeSeconds: null }]);
  t.equal(parseEdgeConfig('{}', 'f', '/tmp').history, null);
  t.equal(fileProblems('{\n  "history": [\n    { "topics": "queue.>" },\n    { "topics": "*.completed" }\n  ]\n}'),
    'brainstem.config.json:4: history[1].topics: "*.completed" overlaps rule 0 ("queue.>"): a topic may be retained by one rule only');
  t.equal(fileProblems('{"history": [{"topics": "a", "maxEvents": 2.5}]}'), 'brainstem.config.json:1: history[0].maxEvents: must be integer');
  t.equal(fileProblems('{"history": [{"topics": "a", "keep": 1}]}'), 'brainstem.config.json:1: history[0].keep: unknown field');
});

t.test('the rules in force: BUS_HISTORY over the file, the file over the defaults', async (t) => {
  const edge = parseEdgeConfig('{"history": [{"topics": "from.file"}]}', 'f', '/tmp');
  const defaults = await startGateway(t);
  t.same(defaults.app.history.rules.list, DEFAULT_RULES);
  const file = await startGateway(t, { edge });
  t.same(file.app.history.rules.list.map((r) => r.topics), ['from.file']);
  const env = await startGateway(t, { edge, busHistory: [{ topics: 'from.env', maxEvents: 1, maxAgeSeconds: null }] });
  t.same(env.app.history.rules.list.map((r) => r.topics), ['from.env']);
});

t.test('patterns overlap when one topic matches both; offsets order numerically', async (t) => {
  const cases: [string, string, boolean][] = [
    ['a.>', 'a.b', true], ['a.>', 'a', false], ['>', 'x', true], ['a.*', 'a.b.c', false], ['a.*.c', 'a.b.*', true],
    ['a.b', 'a.c', false], ['*.x', 'y.>', true], ['a', 'a', true], ['a.b.>', 'a.*', false],
  ];
  for (const [a, b, expected] of cases) {
    t.equal(patternsOverlap(a, b), expected, `${a} / ${b}`);
    t.equal(patternsOverlap(b, a), expected, `${b} / ${a}`);
  }
  t.equal(parseOffset('0'), '0-0');
  t.equal(parseOffset('007-01'), '7-1');
  t.equal(parseOffset('18446744073709551616-0'), null, 'beyond 64 bits');
  t.equal(parseOffset('1-'), null);
  t.ok(compareOffsets('999-5', '1000-0') < 0);
  t.ok(compareOffsets('1000-10', '1000-9') > 0);
  t.equal(compareOffsets('5-5', '5-5'), 0);
});
