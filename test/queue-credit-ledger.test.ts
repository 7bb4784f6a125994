import t from 'tap';
import { CreditLedger, type TaskConsumer } from '../src/queues/credit-ledger.js';
import { LeaseTable } from '../src/queues/lease-table.js';

function consumer(id: string): TaskConsumer & { closing: boolean } {
  return { id, label: id, closing: false, send() {} };
}

t.test('credits are served round robin across consumers, each pull id in order', async (t) => {
  const ledger = new CreditLedger();
  const a = consumer('a');
  const b = consumer('b');
  for (const id of [1, 2, 3]) ledger.grant('q', a, id);
  ledger.grant('q', b, 'only');
  t.equal(ledger.credits('q'), 4);
  const order = [1, 2, 3, 4].map(() => {
    const credit = ledger.take('q');
    return `${credit?.consumer.id}:${String(credit?.pullId)}`;
  });
  t.same(order, ['a:1', 'b:only', 'a:2', 'a:3']);
  t.equal(ledger.take('q'), null);
  t.equal(ledger.credits('q'), 0);
});

t.test('a dropped or closing consumer gets nothing and its credits are gone', async (t) => {
  const ledger = new CreditLedger();
  const a = consumer('a');
  const b = consumer('b');
  const c = consumer('c');
  ledger.grant('q', a, undefined);
  ledger.grant('r', a, undefined);
  ledger.grant('q', b, undefined);
  ledger.grant('q', c, undefined);
  ledger.drop('a');
  t.equal(ledger.credits('q'), 2);
  t.equal(ledger.credits('r'), 0);
  b.closing = true;
  t.equal(ledger.take('q')?.consumer.id, 'c', 'the closing one is skipped');
  t.equal(ledger.credits('q'), 0);
  t.same(ledger.pullers('q'), []);
});

t.test('leases: found per connection by task id, two queues may share an id', async (t) => {
  const table = new LeaseTable<string>();
  const a = consumer('a');
  const lease = (queue: string, taskId: string) => ({ consumer: a, queue, taskId, job: `${queue}/${taskId}`, token: 't', deliveredAt: 0 });
  const first = lease('q1', 'same');
  const second = lease('q2', 'same');
  table.add(first);
  table.add(second);
  table.add(lease('q1', 'other'));
  t.equal(table.size, 3);
  t.equal(table.countOf('q1', 'a'), 2);
  t.equal(table.take('a', 'same'), first, 'the oldest first');
  t.equal(table.take('a', 'same'), second);
  t.equal(table.take('a', 'same'), undefined);
  t.notOk(table.remove(first), 'already gone');
  t.same(table.takeAll('a').map((l) => l.job), ['q1/other']);
  t.equal(table.size, 0);
  t.same(table.queues(), []);
});
