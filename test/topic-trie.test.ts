import t from 'tap';
import { TopicTrie } from '../src/bus/topic-trie.js';
import { isValidPattern, isValidTopic, patternCovers, patternMatches } from '../src/bus/topic.js';

function matches(trie: TopicTrie<string>, topic: string): string[] {
  return [...trie.subscribersOf(topic)].sort();
}

t.test('exact, * and > patterns', async (t) => {
  const trie = new TopicTrie<string>();
  trie.add('fs.change', 'exact');
  trie.add('fs.*', 'star');
  trie.add('fs.>', 'rest');
  trie.add('>', 'all');
  trie.add('*.change', 'first');
  t.same(matches(trie, 'fs.change'), ['all', 'exact', 'first', 'rest', 'star']);
  t.same(matches(trie, 'fs.change.deep'), ['all', 'rest']);
  t.same(matches(trie, 'fs'), ['all'], '> needs at least one more segment');
  t.same(matches(trie, 'agent.reply'), ['all']);
});

t.test('remove prunes and keeps the others', async (t) => {
  const trie = new TopicTrie<string>();
  trie.add('a.b.c', 'x');
  trie.add('a.b.c', 'y');
  trie.add('a.>', 'x');
  t.equal(trie.add('a.b.c', 'x'), false, 'adding twice is one subscription');
  t.same(trie.patternCounts(), { 'a.b.c': 2, 'a.>': 1 });
  t.equal(trie.remove('a.b.c', 'x'), true);
  t.equal(trie.remove('a.b.c', 'x'), false);
  t.same(matches(trie, 'a.b.c'), ['x', 'y']);
  trie.remove('a.b.c', 'y');
  trie.remove('a.>', 'x');
  t.same(trie.patternCounts(), {});
  t.same(matches(trie, 'a.b.c'), []);
  t.equal(trie.remove('never.added', 'x'), false);
});

t.test('topic and pattern validation', async (t) => {
  for (const good of ['fs.change', 'a', 'heartbeat.ping', 'x-y_z.1']) t.ok(isValidTopic(good), good);
  for (const bad of ['', 'a..b', '.a', 'a.', 'a b', 'a.*', 'a.>', 'x'.repeat(257), 42]) t.notOk(isValidTopic(bad), String(bad));
  for (const good of ['a.*', 'a.>', '>', '*', '*.b.>']) t.ok(isValidPattern(good), good);
  for (const bad of ['a.>.b', 'a*', 'a.b>', '', 'a..b']) t.notOk(isValidPattern(bad), bad);
});

t.test('client-side matching agrees with the trie', async (t) => {
  const patterns = ['a.b', 'a.*', 'a.>', '*.b', '>', '*', 'a.*.c', 'b.>'];
  const topics = ['a', 'a.b', 'a.b.c', 'b.b', 'b', 'a.x.c'];
  for (const topic of topics) {
    const trie = new TopicTrie<string>();
    for (const p of patterns) trie.add(p, p);
    t.same(matches(trie, topic), patterns.filter((p) => patternMatches(p, topic)).sort(), topic);
  }
});

t.test('pattern coverage for permissions', async (t) => {
  t.ok(patternCovers('agent.>', 'agent.*.done'));
  t.ok(patternCovers('agent.>', 'agent.reply'));
  t.ok(patternCovers('*.reply', 'agent.reply'));
  t.ok(patternCovers('>', 'a.>'));
  t.notOk(patternCovers('agent.reply', 'agent.*'));
  t.notOk(patternCovers('agent.*', 'agent.>'));
  t.notOk(patternCovers('agent.>', 'agent'));
  t.notOk(patternCovers('tts.>', 'agent.reply'));
});
