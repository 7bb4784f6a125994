import t from 'tap';
import { bearer, edgeConfig, tokenSpec } from './helpers/edge.js';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket } from './helpers/test-socket.js';

// Following a stream needs the right to read the task's queue (bus protocol v3 §3), over /bus and over SSE.
const redis = await startRedis(t);
const TOKENS = { llm: 'llm-token-0123456789abcdef', overlay: 'overlay-token-0123456789abcdef' };

t.test('a token limited to other queues cannot follow a task\'s stream; one allowed its queue can', async (t) => {
  const gw = await startGateway(t, {
    redisUrl: redis.url,
    queuePrefix: 'streams-rights',
    edge: edgeConfig({
      tokens: [
        tokenSpec('llm', TOKENS.llm, { queues: ['llm.generate'] }),
        tokenSpec('overlay', TOKENS.overlay, { queues: ['overlay.jobs'] }),
      ],
    }),
  });
  const llm = await TestSocket.open(gw.busUrl, { headers: bearer(TOKENS.llm) });
  const overlay = await TestSocket.open(gw.busUrl, { headers: bearer(TOKENS.overlay) });
  t.teardown(() => {
    llm.close();
    overlay.close();
  });
  const { taskId } = await llm.call({ action: 'enqueue', queue: 'llm.generate', task: { prompt: 'hi' }, opts: { stream: true } }) as { taskId: string };
  t.ok(taskId);

  const refused = await overlay.call({ action: 'follow', taskId });
  t.equal(refused.code, 'FORBIDDEN', 'another queue\'s token may not follow');
  const sse = await fetch(`${gw.httpUrl}/queues/llm.generate/tasks/${taskId}/stream`, { headers: bearer(TOKENS.overlay) });
  t.equal(sse.status, 403, 'nor over SSE');
  t.equal(((await sse.json()) as { code: string }).code, 'FORBIDDEN');

  t.match(await llm.call({ action: 'follow', taskId }), { ok: true }, 'the queue\'s own token follows');
  llm.send({ action: 'pull', queue: 'llm.generate' });
  await llm.next((f) => 'task' in f);
  t.match(await llm.call({ action: 'chunk', taskId, data: 'Hel' }), { ok: true, seq: 1 });
  const chunk = await llm.next((f) => 'chunk' in f);
  t.same(chunk.chunk, { taskId, seq: 1, attempt: 1, data: 'Hel' });
  t.ok(await overlay.nothing((f) => 'chunk' in f), 'the refused follower got nothing');
});
