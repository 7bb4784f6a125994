import t from 'tap';
import { CreditLedger, type TaskConsumer } from '../src/queues/credit-ledger.js';
import { LeaseTable } from '../src/queues/lease-table.js';
import type { TaskFacts } from '../src/queues/stored-task.js';

const NO_FACTS: TaskFacts = { maxAttempts: 1, replyTo: undefined, traceparent: undefined, stream: undefined };

function consumer(id: string): TaskConsumer & { closing: boolean } {
  return { id, label: id, closing: false, send() {} };
}

t.test('credits are served round robin across consumers, each pull id in order', async (t) => {
  const ledger = new CreditLedger();
  const a = consumer('a');
  const b = consumer('b');
  for (const id of [1, 2, 3]) ledger.grant(a, id);
  ledger.grant(b, 'only');
  t.equal(ledger.credits, 4);
  const order = [1, 2, 3, 4].map(() => {
    const credit = ledger.take();
    return `${credit?.consumer.id}:${String(credit?.pullId)}`;
  });
  t.same(order, ['a:1', 'b:only', 'a:2', 'a:3']);
  t.equal(ledger.take(), null);
  t.equal(ledger.credits, 0);
});

t.test('a dropped or closing consumer gets nothing and its credits are gone', async (t) => {
  const ledger = new CreditLedger();
  const a = consumer('a');
  const b = consumer('b');
  const c = consumer('c');
  ledger.grant(a, undefined);
  ledger.grant(a, undefined);
  ledger.grant(b, undefined);
  ledger.grant(c, undefined);
  ledger.drop('a');
  t.equal(ledger.credits, 2);
  t.equal(ledger.creditsOf('a'), 0);
  b.closing = true;
  t.equal(ledger.take()?.consumer.id, 'c', 'the closing one is skipped');
  t.equal(ledger.credits, 0);
  t.same(ledger.pullers(), []);
});

t.test('a lone consumer\'s credits, then a second consumer joining and the first leaving', async (t) => {
  const ledger = new CreditLedger();
  const a = consumer('a');
  const b = consumer('b');
  ledger.grant(a, 1);
  ledger.grant(a, 2);
  t.equal(ledger.creditsOf('a'), 2);
  t.same(ledger.pullers(), [{ consumer: a, credits: 2 }]);
  t.equal(ledger.take()?.pullId, 1);
  ledger.grant(b, 'b1');
  t.same([ledger.take(), ledger.take()].map((credit) => `${credit?.consumer.id}:${String(credit?.pullId)}`), ['a:2', 'b:b1'], 'the one that pulled first goes first');
  t.equal(ledger.take(), null);
  ledger.grant(a, 3);
  ledger.grant(b, 'b2');
  ledger.drop('a');
  t.same(ledger.pullers(), [{ consumer: b, credits: 1 }], 'the one left keeps its credit');
  b.closing = true;
  t.equal(ledger.take(), null, 'a closing lone consumer gets nothing');
  t.equal(ledger.credits, 0);
  ledger.grant(a, 4);
  ledger.drop('a');
  t.equal(ledger.credits, 0);
  t.same(ledger.pullers(), []);
});

t.test('leases: found per connection by task id, two queues may share an id', async (t) => {
  const table = new LeaseTable<string>();
  const a = consumer('a');
  const lease = (queue: string, taskId: string) => ({ consumer: a, queue, taskId, job: `${queue}/${taskId}`, token: 't', facts: NO_FACTS, deliveredAt: 0 });
  const first = lease('q1', 'same');
  const second = lease('q2', 'same');
  table.add(first);
  table.add(second);
  table.add(lease('q1', 'other'));
  t.equal(table.size, 3);
  t.equal(table.find('a', 'same'), first, 'the oldest first');
  t.ok(table.remove(first));
  t.equal(table.find('a', 'same'), second);
  t.notOk(table.remove(first), 'already gone');
  t.ok(table.remove(second));
  t.equal(table.find('a', 'same'), undefined);
  t.same(table.heldBy('a').map((l) => l.job), ['q1/other']);
  t.same(table.consumers(), ['a']);
  t.equal(table.size, 1);
});
