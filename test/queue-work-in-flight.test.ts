import t from 'tap';
import { WorkInFlight } from '../src/queues/work-in-flight.js';

t.test('a token marked busy twice (a settlement and the fetch of the next task under it) stays busy until both end', async (t) => {
  const work = new WorkInFlight();
  const token = work.newToken();
  t.ok(token.startsWith(`${work.fetcherId}:`), 'its tokens carry the gateway\'s fetcher id: recovery tells its own orphans by it');
  let finishSettlement!: () => void;
  const settlement = work.withToken(token, () => new Promise<void>((resolve) => { finishSettlement = resolve; }));
  work.done(token);
  t.ok(work.isBusy(token), 'the fetch ended, the settlement under the same token has not');
  finishSettlement();
  await settlement;
  t.notOk(work.isBusy(token), 'both ended: a task still locked with it is an orphan');
  work.done(token);
  t.notOk(work.isBusy(token), 'one done too many does not mark it busy again');
  work.busy(token);
  t.ok(work.isBusy(token));
});
