import { QueueKeys } from 'bullmq';
import t from 'tap';
import { RESERVED_TASK_IDS } from '../src/queues/bullmq-adapter.js';
import { bearer, edgeConfig, tokenSpec } from './helpers/edge.js';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket } from './helpers/test-socket.js';

const redis = await startRedis(t);
const TOKENS = { ops: 'ops-token-0123456789abcdef', svc: 'svc-token-0123456789abcdef' };

t.test('task ids that are BullMQ\'s own key names are refused, over the bus and REST, and nothing is stored', async (t) => {
  // The list this gateway refuses comes from the installed bullmq's own key
  // names; this pin breaks when bullmq adds one, so the change is seen.
  const bullmqKeys = Object.keys(new QueueKeys().getKeys('q')).filter((k) => k !== '').sort();
  t.same(bullmqKeys, ['active', 'completed', 'de', 'delayed', 'events', 'failed', 'id', 'limiter', 'marker', 'meta', 'paused',
    'pc', 'prioritized', 'repeat', 'stalled', 'stalled-check', 'wait', 'waiting-children'], 'bullmq\'s key names (pinned)');
  t.same([...RESERVED_TASK_IDS].sort(), bullmqKeys, 'every one of them is reserved');

  const gw = await startGateway(t, { redisUrl: redis.url, queuePrefix: 'sec1' });
  const socket = await TestSocket.open(gw.busUrl);
  t.teardown(() => socket.close());
  for (const jobId of bullmqKeys) {
    const answer = await socket.call({ action: 'enqueue', queue: 'keys.q', task: { jobId }, opts: { jobId } });
    t.equal(answer.code, 'INVALID_FRAME', `bus: ${jobId}`);
    const rest = await fetch(`${gw.httpUrl}/queues/keys.q/tasks`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ task: 1, opts: { jobId } }),
    });
    t.equal(rest.status, 400, `REST: ${jobId}`);
    t.equal(((await rest.json()) as { code: string }).code, 'INVALID_FRAME');
  }
  // The queue still works, stalled check and priorities included.
  t.same((await socket.call({ action: 'enqueue', queue: 'keys.q', task: 1, opts: { priority: 2 } })).ok, true);
  const view = await (await fetch(`${gw.httpUrl}/queues/keys.q`)).json() as { counts: Record<string, number> };
  t.equal(view.counts.waiting, 1, 'only the accepted task is stored');
});

t.test('deeply nested JSON in a task answers INVALID_FRAME (bus) and 400 (REST), not UNAVAILABLE', async (t) => {
  const gw = await startGateway(t, { redisUrl: redis.url, queuePrefix: 'sec2' });
  const depth = 20_000;
  const deep = `${'['.repeat(depth)}${']'.repeat(depth)}`;
  const socket = await TestSocket.open(gw.busUrl);
  t.teardown(() => socket.close());
  socket.send(`{"action":"enqueue","queue":"deep.q","id":"d1","task":${deep}}`);
  const answer = await socket.next((f) => f.id === 'd1');
  t.equal(answer.code, 'INVALID_FRAME', String(answer.error));
  const rest = await fetch(`${gw.httpUrl}/queues/deep.q/tasks`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"task":${deep}}`,
  });
  t.equal(rest.status, 400);
  t.equal(((await rest.json()) as { code: string }).code, 'INVALID_FRAME');
  t.same((await socket.call({ action: 'enqueue', queue: 'deep.q', task: [[1]] })).ok, true, 'the gateway still serves');
  const view = await (await fetch(`${gw.httpUrl}/queues/deep.q`)).json() as { counts: Record<string, number> };
  t.equal(view.counts.waiting, 1, 'nothing of the deep task stored');
});

t.test('with tokens: replyTo needs the publish right; a limited token sees only its queues', async (t) => {
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    queuePrefix: 'sec3',
    edge: edgeConfig({
      tokens: [
        tokenSpec('ops', TOKENS.ops, { admin: true }),
        tokenSpec('svc', TOKENS.svc, { publish: ['svc.>'], subscribe: ['svc.>'], queues: ['svc.work'] }),
      ],
    }),
  });
  const svc = await TestSocket.open(gw.busUrl, { headers: bearer(TOKENS.svc) });
  const ops = await TestSocket.open(gw.busUrl, { headers: bearer(TOKENS.ops) });
  t.teardown(() => {
    svc.close();
    ops.close();
  });
  const forged = await svc.call({ action: 'enqueue', queue: 'svc.work', task: 1, opts: { replyTo: 'heartbeat.down' } });
  t.equal(forged.code, 'FORBIDDEN', 'a replyTo the token may not publish on');
  const restForged = await fetch(`${gw.httpUrl}/queues/svc.work/tasks`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...bearer(TOKENS.svc) },
    body: JSON.stringify({ task: 1, opts: { replyTo: 'heartbeat.down' } }),
  });
  t.equal(restForged.status, 403);
  t.same((await svc.call({ action: 'enqueue', queue: 'svc.work', task: 2, opts: { replyTo: 'svc.reply' } })).ok, true, 'its own topic is fine');
  t.same((await ops.call({ action: 'enqueue', queue: 'other.work', task: 3 })).ok, true);

  const asSvc = (path: string) => fetch(`${gw.httpUrl}${path}`, { headers: bearer(TOKENS.svc) });
  const asOps = (path: string) => fetch(`${gw.httpUrl}${path}`, { headers: bearer(TOKENS.ops) });
  const svcList = await (await asSvc('/queues')).json() as { queues: { name: string; counts: Record<string, number> }[] };
  t.same(svcList.queues.map((q) => q.name), ['svc.work'], 'the limited token lists only its queue');
  t.equal(svcList.queues[0]?.counts.waiting, 1, 'with only the allowed task stored');
  const opsList = await (await asOps('/queues')).json() as { queues: { name: string }[] };
  t.same(opsList.queues.map((q) => q.name), ['other.work', 'svc.work'], 'an admin sees every queue');
  t.equal((await asSvc('/queues/other.work')).status, 403);
  const ids = await (await asOps('/queues/other.work')).json() as { tasks: { waiting: { id: string }[] } };
  const otherId = ids.tasks.waiting[0]?.id;
  t.ok(otherId);
  t.equal((await asSvc(`/queues/other.work/tasks/${otherId}`)).status, 403);
  t.equal((await asSvc('/queues/svc.work')).status, 200);
});
