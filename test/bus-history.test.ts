import t from 'tap';
import { bearer, edgeConfig, tokenSpec } from './helpers/edge.js';
import { startGateway, type RunningGateway } from './helpers/gateway.js';
import { TestSocket, until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;
type Event = { type: string; payload: unknown; offset?: string; msgId?: string };

const RULES = [
  { topics: 'orders.>', maxEvents: 100_000, maxAgeSeconds: null },
  { topics: 'small.>', maxEvents: 100, maxAgeSeconds: null },
];

function startHistoryGateway(t: { teardown(fn: () => unknown): void }): Promise<RunningGateway> {
  return startGateway(t, { busHistory: RULES });
}

/** Events received so far (not taken by a waiter), in order. */
function eventsOf(socket: TestSocket): Event[] {
  return socket.received.filter((f) => 'event' in f).map((f) => f.event as Event);
}

/** Waits for the pong of a ping sent now: every frame sent before it was handled. */
async function barrier(socket: TestSocket): Promise<void> {
  const id = `ping-${Math.random()}`;
  socket.send({ action: 'ping', id });
  await socket.next((f) => 'pong' in f && f.id === id);
}

/** Publishes without receipts, then waits until the gateway has taken them all. */
async function publishAll(socket: TestSocket, type: string, from: number, to: number): Promise<void> {
  for (let n = from; n < to; n++) socket.send({ action: 'publish', message: { type, payload: n } });
  await barrier(socket);
}

function payloads(events: Event[]): unknown[] {
  return events.map((e) => e.payload);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

t.test('retained events carry an offset, the receipt says it; other topics keep their shape', async (t) => {
  const gw = await startHistoryGateway(t);
  const sub = await TestSocket.open(gw.busUrl);
  t.teardown(() => sub.close());
  await sub.call({ action: 'subscribe', topic: '>' });
  const receipt = await sub.call({ action: 'publish', message: { type: 'orders.created', payload: 1 } });
  t.match(receipt.offset, /^\d+-\d+$/);
  t.equal(receipt.delivered, 1);
  const retained = (await sub.event('orders.created')).event as Event;
  t.equal(retained.offset, receipt.offset, 'the event carries the offset of its receipt');
  const plain = await sub.call({ action: 'publish', message: { type: 'fs.change', payload: 2 } });
  t.notOk('offset' in plain);
  const event = (await sub.event('fs.change')).event as Frame;
  t.same(Object.keys(event), ['type', 'source', 'payload', 'timestamp']);
});

t.test('one publisher\'s events keep their order when retained and plain topics alternate', async (t) => {
  const gw = await startHistoryGateway(t);
  const pub = await TestSocket.open(gw.busUrl);
  const sub = await TestSocket.open(gw.busUrl);
  t.teardown(() => { pub.close(); sub.close(); });
  await sub.call({ action: 'subscribe', topic: '>' });
  for (let n = 0; n < 200; n++) pub.send({ action: 'publish', message: { type: n % 3 ? 'fs.change' : 'orders.created', payload: n } });
  await pub.call({ action: 'publish', message: { type: 'fs.change', payload: 200 } });
  await until(() => eventsOf(sub).length === 201);
  t.same(payloads(eventsOf(sub)), range(0, 201), 'a plain event waits for the retained one published before it');
});

t.test('a subscriber cut off while 1,000 events are published resumes from its last offset: all 1,000, in order, once', async (t) => {
  const gw = await startHistoryGateway(t);
  const pub = await TestSocket.open(gw.busUrl);
  let sub = await TestSocket.open(gw.busUrl);
  t.teardown(() => { pub.close(); sub.close(); });
  const first = await sub.call({ action: 'subscribe', topic: 'orders.>', last: 0 });
  t.same([first.replayed, first.gap], [0, false]);
  let lastOffset = first.offset as string;

  const publishing = publishAll(pub, 'orders.created', 0, 1000);
  await until(() => eventsOf(sub).length >= 100);
  sub.ws.terminate();
  const before = eventsOf(sub);
  lastOffset = before[before.length - 1]?.offset ?? lastOffset;
  await publishing;

  sub = await TestSocket.open(gw.busUrl);
  const resumed = await sub.call({ action: 'subscribe', topic: 'orders.>', since: lastOffset });
  t.equal(resumed.gap, false);
  t.equal(before.length + (resumed.replayed as number), 1000);
  t.same(payloads([...before, ...eventsOf(sub)]), range(0, 1000), 'each event once, in publish order');
  const offsets = [...before, ...eventsOf(sub)].map((e) => e.offset as string);
  t.equal(new Set(offsets).size, 1000);
  t.equal(resumed.offset, offsets[999], 'the receipt gives the newest offset');
});

t.test('a replay while the publisher keeps going: no gap and no duplicate at the seam', async (t) => {
  const gw = await startHistoryGateway(t);
  const pub = await TestSocket.open(gw.busUrl);
  const sub = await TestSocket.open(gw.busUrl);
  t.teardown(() => { pub.close(); sub.close(); });
  const total = 3000;
  let sent = 0;
  const publishing = (async () => {
    while (sent < total) {
      for (const end = sent + 50; sent < end; sent++) pub.send({ action: 'publish', message: { type: 'orders.paid', payload: sent } });
      await barrier(pub);
    }
  })();
  await until(() => sent >= 1000);
  const receipt = await sub.call({ action: 'subscribe', topic: 'orders.paid', since: '0' });
  t.ok((receipt.replayed as number) >= 1000, `replayed ${String(receipt.replayed)} while the publisher went on`);
  t.ok(sent > (receipt.replayed as number) || sent === total);
  await publishing;
  // A last live event is the barrier: everything before it has arrived.
  await pub.call({ action: 'publish', message: { type: 'orders.paid', payload: total } });
  await until(() => eventsOf(sub).some((e) => e.payload === total));
  t.same(payloads(eventsOf(sub)), range(0, total + 1), 'replay then live, each once, in order');
});

t.test('last=N replays the newest N matching events; the pattern filters within its rule', async (t) => {
  const gw = await startHistoryGateway(t);
  const pub = await TestSocket.open(gw.busUrl);
  const sub = await TestSocket.open(gw.busUrl);
  t.teardown(() => { pub.close(); sub.close(); });
  for (let n = 0; n < 20; n++) pub.send({ action: 'publish', message: { type: n % 2 ? 'orders.odd' : 'orders.even', payload: n } });
  await barrier(pub);
  // A publish answers after it is stored; a receipt after the 20 proves they all are.
  await pub.call({ action: 'publish', message: { type: 'orders.flush', payload: null } });
  const receipt = await sub.call({ action: 'subscribe', topic: 'orders.odd', last: 3 });
  t.same([receipt.replayed, receipt.gap], [3, false]);
  t.same(payloads(eventsOf(sub)), [15, 17, 19]);
  const all = await sub.call({ action: 'subscribe', topic: 'orders.even', last: 50 });
  t.same([all.replayed, all.gap], [10, false], 'fewer than asked, none trimmed: no gap');
  const future = await sub.call({ action: 'subscribe', topic: 'orders.even', since: '18446744073709551615-18446744073709551615' });
  t.same([future.ok, future.replayed, future.gap], [true, 0, false], 'an offset beyond the newest: nothing to replay');
});

t.test('gap: true once maxEvents trimmed what was asked', async (t) => {
  const gw = await startHistoryGateway(t);
  const pub = await TestSocket.open(gw.busUrl);
  const sub = await TestSocket.open(gw.busUrl);
  t.teardown(() => { pub.close(); sub.close(); });
  const firstReceipt = await pub.call({ action: 'publish', message: { type: 'small.tick', payload: 0 } });
  await publishAll(pub, 'small.tick', 1, 1000);
  await pub.call({ action: 'publish', message: { type: 'small.tick', payload: 1000 } });
  const resumed = await sub.call({ action: 'subscribe', topic: 'small.tick', since: firstReceipt.offset as string });
  t.equal(resumed.gap, true, 'events after the offset were trimmed');
  const replayed = payloads(eventsOf(sub)) as number[];
  t.ok(replayed.length >= 100 && replayed.length < 1000, `kept about maxEvents (${replayed.length})`);
  t.same(replayed, range(1001 - replayed.length, 1001), 'what is left is the newest, in order');
  const recent = await sub.call({ action: 'subscribe', topic: 'small.>', since: eventsOf(sub)[0]?.offset as string });
  t.equal(recent.gap, false, 'an offset still in the stream: no gap');
  const tooMany = await sub.call({ action: 'subscribe', topic: 'small.>', last: 5000 });
  t.equal(tooMany.gap, true, 'last=N beyond what trimming left');
});

t.test('the same msgId twice on a topic: delivered once, stored once; other topics and ids are separate', async (t) => {
  const gw = await startHistoryGateway(t);
  const pub = await TestSocket.open(gw.busUrl);
  const sub = await TestSocket.open(gw.busUrl);
  t.teardown(() => { pub.close(); sub.close(); });
  await sub.call({ action: 'subscribe', topic: '>' });
  const message = { type: 'orders.created', payload: 'once', msgId: 'm-1' };
  const first = await pub.call({ action: 'publish', message });
  const second = await pub.call({ action: 'publish', message: { ...message, payload: 'again' } });
  t.equal(first.duplicate, undefined);
  t.same([second.ok, second.duplicate, second.delivered], [true, true, 0]);
  const plainFirst = await pub.call({ action: 'publish', message: { type: 'fs.change', msgId: 'm-1' } });
  const plainSecond = await pub.call({ action: 'publish', message: { type: 'fs.change', msgId: 'm-1' } });
  t.same([plainFirst.duplicate, plainSecond.duplicate], [undefined, true], 'topics nothing retains are deduplicated too, per topic');
  await pub.call({ action: 'publish', message: { type: 'orders.created', payload: 'barrier', msgId: 'm-2' } });
  await sub.event('fs.change');
  const delivered = eventsOf(sub).filter((e) => e.type === 'orders.created');
  await until(() => eventsOf(sub).some((e) => e.payload === 'barrier'));
  t.same(payloads(eventsOf(sub).filter((e) => e.type === 'orders.created')), ['once', 'barrier']);
  t.equal(eventsOf(sub)[0]?.msgId, 'm-1', 'events keep their msgId');
  t.ok(delivered);
  const history = await (await fetch(`${gw.httpUrl}/bus/history?topic=orders.created&since=0`)).json() as { events: Event[] };
  t.same(payloads(history.events), ['once', 'barrier'], 'the repeat was stored nowhere');
  const bad = await pub.call({ action: 'publish', message: { type: 'orders.created', msgId: 'x'.repeat(129) } });
  t.equal(bad.code, 'INVALID_FRAME');
});

t.test('bad resumes: NOT_RETAINED and INVALID_FRAME, nothing subscribed, the connection still usable', async (t) => {
  const gw = await startHistoryGateway(t);
  const sub = await TestSocket.open(gw.busUrl);
  const pub = await TestSocket.open(gw.busUrl);
  t.teardown(() => { sub.close(); pub.close(); });
  for (const topic of ['fs.change', '>', 'orders']) {
    const refused = await sub.call({ action: 'subscribe', topic, since: '0' });
    t.equal(refused.code, 'NOT_RETAINED', topic);
  }
  t.equal((await sub.call({ action: 'subscribe', topic: 'fs.change', last: 1 })).code, 'NOT_RETAINED');
  for (const bad of [{ since: 'abc' }, { since: 12 }, { since: '1-2-3' }, { last: -1 }, { last: 10_001 }, { last: 1.5 }, { since: '0', last: 1 }]) {
    const refused = await sub.call({ action: 'subscribe', topic: 'orders.>', ...bad });
    t.equal(refused.code, 'INVALID_FRAME', JSON.stringify(bad));
  }
  const state = await (await fetch(`${gw.httpUrl}/bus`)).json() as { subscriptions: Record<string, number> };
  t.same(state.subscriptions, {}, 'nothing was subscribed');
  await sub.call({ action: 'subscribe', topic: 'fs.change' });
  await pub.call({ action: 'publish', message: { type: 'fs.change', payload: 'still here' } });
  t.equal(((await sub.event('fs.change')).event as Event).payload, 'still here');
});

t.test('GET /bus/history: since, last, gap; NOT_RETAINED and bad offsets answered 400', async (t) => {
  const gw = await startHistoryGateway(t);
  const pub = await TestSocket.open(gw.busUrl);
  t.teardown(() => pub.close());
  const receipts: Frame[] = [];
  for (let n = 0; n < 5; n++) receipts.push(await pub.call({ action: 'publish', message: { type: `orders.n${n}`, payload: n } }));
  const get = async (query: string) => {
    const response = await fetch(`${gw.httpUrl}/bus/history?${query}`);
    return { status: response.status, body: await response.json() as { events: Event[]; gap: boolean; offset: string; code?: string } };
  };
  const since = await get(`topic=orders.>&since=${String(receipts[1]?.offset)}`);
  t.equal(since.status, 200);
  t.same(payloads(since.body.events), [2, 3, 4]);
  t.same(since.body.events.map((e) => e.offset), receipts.slice(2).map((r) => r.offset));
  t.equal(since.body.gap, false);
  t.equal(since.body.offset, receipts[4]?.offset);
  t.same(payloads((await get('topic=orders.>&last=2')).body.events), [3, 4]);
  t.same(payloads((await get('topic=orders.n1&last=10')).body.events), [1]);
  t.same(payloads((await get('topic=orders.>')).body.events), [0, 1, 2, 3, 4], 'neither since nor last: the last 100');
  const refused = await get('topic=fs.change&last=1');
  t.same([refused.status, refused.body.code], [400, 'NOT_RETAINED']);
  const bad = await get('topic=orders.>&since=yesterday');
  t.same([bad.status, bad.body.code], [400, 'INVALID_FRAME']);
});

t.test('the default rules retain queue.> and the request inboxes', async (t) => {
  const gw = await startGateway(t);
  const pub = await TestSocket.open(gw.busUrl);
  t.teardown(() => pub.close());
  t.match(await pub.call({ action: 'publish', message: { type: '_inbox.abc', payload: 1 } }), { ok: true, offset: /^\d+-\d+$/ });
  t.notOk('offset' in await pub.call({ action: 'publish', message: { type: 'fs.change', payload: 1 } }));
  await pub.call({ action: 'enqueue', queue: 'jobs', task: { n: 1 } });
  const worker = await TestSocket.open(gw.busUrl);
  t.teardown(() => worker.close());
  worker.send({ action: 'pull', queue: 'jobs' });
  const { task } = await worker.next((f) => 'task' in f) as { task: { id: string } };
  await worker.call({ action: 'ack', taskId: task.id, result: 'done' });
  const late = await TestSocket.open(gw.busUrl);
  t.teardown(() => late.close());
  await late.call({ action: 'subscribe', topic: 'queue.completed', since: '0' });
  t.match((await late.event('queue.completed')).event, { payload: { queue: 'jobs', taskId: task.id } }, 'a dashboard that was away catches up on queue events');
});

t.test('a requester away when its task completed gets the reply once it resumes its inbox (or by task id)', async (t) => {
  const gw = await startGateway(t);
  let requester = await TestSocket.open(gw.busUrl);
  const worker = await TestSocket.open(gw.busUrl);
  t.teardown(() => { requester.close(); worker.close(); });
  const inbox = '_inbox.requester-1';
  const position = (await requester.call({ action: 'subscribe', topic: inbox, last: 0 })).offset as string;
  const { taskId } = await requester.call({ action: 'enqueue', queue: 'math.add', task: { a: 1, b: 2 }, opts: { replyTo: inbox } }) as { taskId: string };
  requester.ws.terminate();

  worker.send({ action: 'pull', queue: 'math.add' });
  const { task } = await worker.next((f) => 'task' in f) as { task: { id: string } };
  await worker.call({ action: 'ack', taskId: task.id, result: 3 });

  requester = await TestSocket.open(gw.busUrl);
  const resumed = await requester.call({ action: 'subscribe', topic: inbox, since: position });
  t.equal(resumed.replayed, 1);
  t.match((await requester.event(inbox)).event, { type: inbox, payload: 3, correlationId: taskId }, 'the reply, with the task id');
  const view = await (await fetch(`${gw.httpUrl}/queues/math.add/tasks/${taskId}`)).json() as { state: string; result: unknown };
  t.same([view.state, view.result], ['completed', 3], 'a restarted process that lost its inbox asks by task id');
});

t.test('with tokens, history needs the subscribe right on the pattern, over HTTP and on the bus', async (t) => {
  const gw = await startGateway(t, {
    busHistory: RULES,
    edge: edgeConfig({
      tokens: [
        tokenSpec('shop', 'shop-token-0123456789', { publish: ['orders.>'], subscribe: ['orders.created'] }),
      ],
    }),
  });
  const shop = await TestSocket.open(`${gw.busUrl}?token=shop-token-0123456789`);
  t.teardown(() => shop.close());
  await shop.call({ action: 'publish', message: { type: 'orders.created', payload: 1 } });
  const allowed = await fetch(`${gw.httpUrl}/bus/history?topic=orders.created&last=5`, { headers: bearer('shop-token-0123456789') });
  t.equal(allowed.status, 200);
  const wider = await fetch(`${gw.httpUrl}/bus/history?topic=orders.>&last=5`, { headers: bearer('shop-token-0123456789') });
  t.same([wider.status, (await wider.json() as { code: string }).code], [403, 'FORBIDDEN']);
  t.equal((await fetch(`${gw.httpUrl}/bus/history?topic=orders.created&last=5`)).status, 401, 'no token, no history');
  t.equal((await shop.call({ action: 'subscribe', topic: 'orders.>', since: '0' })).code, 'FORBIDDEN');
  t.equal((await shop.call({ action: 'subscribe', topic: 'orders.created', since: '0' })).replayed, 1);
});
