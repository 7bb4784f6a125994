import t from 'tap';
import { buildApp, type BrainstemApp } from '../app.js';
import { BrokerClient } from '../src/client/index.js';
import { isValidPattern, isValidQueueName, isValidTopic, patternMatches } from '../src/bus/topic.js';
import { nameProblem } from '../src/protocol/names.js';
import { edgeConfig, tokenSpec } from './helpers/edge.js';
import { startGateway } from './helpers/gateway.js';
import { TestSocket } from './helpers/test-socket.js';
import { PythonProcess, startDriver } from './python/python-process.js';

type Frame = Record<string, unknown>;

/** The Python exception class and error code a driver command failed with. */
async function failure(call: Promise<unknown>): Promise<unknown> {
  try {
    await call;
  } catch (err) {
    return { kind: (err as { kind?: unknown }).kind, code: (err as { code?: unknown }).code };
  }
  return 'no error';
}

async function failureKind(call: Promise<unknown>): Promise<unknown> {
  return ((await failure(call)) as { kind?: unknown }).kind;
}

t.test('pub/sub with wildcards: each handler sees each matching event once', async (t) => {
  const gw = await startGateway(t);
  const py = await startDriver(t, gw.busUrl, 'py-sub');
  await py.call({ op: 'subscribe', topic: 'agent.*', tag: 'star' });
  await py.call({ op: 'subscribe', topic: 'agent.>', tag: 'tail' });
  await py.call({ op: 'subscribe', topic: 'fs.change', tag: 'exact' });
  await py.call({ op: 'subscribe_many', topics: ['tts.*', 'tts.>', 'tts.speak'], tag: 'overlap' });
  await py.call({ op: 'subscribe', topic: 'end', tag: 'end' });

  const ts = await TestSocket.open(`${gw.busUrl}?name=ts-pub`);
  t.teardown(() => ts.close());
  for (const type of ['agent.reply', 'agent.x.y', 'agentx', 'fs.change', 'fs.other', 'tts.speak', 'end']) {
    ts.send({ action: 'publish', message: { type, payload: { type } } });
  }
  await py.next((l) => l.tag === 'end');
  const seen = py.take((l) => 'event' in l).map((l) => `${l.tag}:${(l.event as Frame).type}`);
  t.same(seen.sort(), ['exact:fs.change', 'overlap:tts.speak', 'star:agent.reply', 'tail:agent.reply', 'tail:agent.x.y'].sort());
});

t.test('Python publishes: a TypeScript subscriber gets the normalized event', async (t) => {
  const gw = await startGateway(t);
  const ts = await TestSocket.open(gw.busUrl);
  t.teardown(() => ts.close());
  await ts.call({ action: 'subscribe', topic: 'transcript.>' });
  const py = await startDriver(t, gw.busUrl, 'stt');
  const answer = await py.call({ op: 'publish', type: 'transcript.final', payload: { text: 'hello' }, confirm: true, opts: { correlationId: 'c-1' } });
  t.equal(answer.delivered, 1, 'the receipt counts the deliveries');
  const event = (await ts.event('transcript.final')).event as Frame;
  t.same(event.payload, { text: 'hello' });
  t.equal(event.source, 'stt', 'the client id is the source');
  t.equal(event.correlationId, 'c-1');
  t.ok(!Number.isNaN(Date.parse(event.timestamp as string)));

  t.same(await failure(py.call({ op: 'publish', type: 'bad..type' })), { kind: 'InvalidArgument', code: 'INVALID_TOPIC' }, 'an invalid type fails before it is sent');
  t.same(await failure(py.call({ op: 'subscribe', topic: 'a.>.b' })), { kind: 'InvalidArgument', code: 'INVALID_TOPIC' });
});

t.test('unsubscribe stops the events', async (t) => {
  const gw = await startGateway(t);
  const py = await startDriver(t, gw.busUrl, 'py');
  await py.call({ op: 'subscribe', topic: 'a.*' });
  await py.call({ op: 'subscribe', topic: 'end' });
  await py.call({ op: 'unsubscribe', topic: 'a.*' });
  t.same(gw.app.bus.router.subscriptionCounts()['a.*'] ?? 0, 0, 'the gateway dropped the subscription');
  await py.call({ op: 'publish', type: 'a.b' });
  await py.call({ op: 'publish', type: 'end' });
  await py.next((l) => l.tag === 'end');
  t.same(py.take((l) => l.tag === 'a.*'), []);
});

t.test('request/reply: TypeScript responder, Python requester', async (t) => {
  const gw = await startGateway(t);
  const responder = await TestSocket.open(`${gw.busUrl}?name=math`);
  t.teardown(() => responder.close());
  await responder.call({ action: 'subscribe', topic: 'math.add' });
  responder.ws.on('message', (data) => {
    const frame = JSON.parse(String(data)) as { event?: Frame };
    const event = frame.event;
    if (!event || event.type !== 'math.add') return;
    const { a, b } = event.payload as { a: number; b: number };
    responder.send({ action: 'publish', message: { type: event.replyTo, correlationId: event.correlationId, payload: { sum: a + b } } });
  });
  const py = await startDriver(t, gw.busUrl, 'cephalon');
  const answers = await Promise.all([1, 2, 3].map((a) => py.call({ op: 'request', type: 'math.add', payload: { a, b: 10 } })));
  t.same(answers.map((a) => (a.reply as Frame).payload), [{ sum: 11 }, { sum: 12 }, { sum: 13 }], 'concurrent requests get their own replies');
  t.equal((answers[0]?.reply as Frame).source, 'math', 'the whole reply event comes back');

  // Nobody subscribes: the gateway refuses it at once, far inside the request's own timeout.
  t.same(await failure(py.call({ op: 'request', type: 'nobody.home', timeout: 600 })), { kind: 'BrokerError', code: 'NO_RESPONDERS' });

  await responder.call({ action: 'subscribe', topic: 'silent.service' });
  const started = Date.now();
  t.equal(await failureKind(py.call({ op: 'request', type: 'silent.service', timeout: 0.3 })), 'RequestTimeout');
  t.ok(Date.now() - started >= 250, 'a subscriber that never answers: rejects at its timeout');
});

t.test('request/reply: Python responder, TypeScript requester', async (t) => {
  const gw = await startGateway(t);
  const py = await startDriver(t, gw.busUrl, 'py-echo');
  await py.call({ op: 'respond', topic: 'echo.*' });
  const requester = await TestSocket.open(gw.busUrl);
  t.teardown(() => requester.close());
  await requester.call({ action: 'subscribe', topic: 'ts.inbox.1' });
  requester.send({ action: 'publish', message: { type: 'echo.please', payload: { x: 1 }, replyTo: 'ts.inbox.1', correlationId: 'c-9' } });
  const reply = (await requester.event('ts.inbox.1')).event as Frame;
  t.equal(reply.correlationId, 'c-9');
  t.same(reply.payload, { echo: { x: 1 }, by: 'py-echo' });
});

t.test('request/reply between the TypeScript client and the Python client, both ways', async (t) => {
  const gw = await startGateway(t);
  const ts = new BrokerClient({ url: gw.busUrl, id: 'ts-llm' });
  await ts.connect();
  t.teardown(() => ts.close());
  const py = await startDriver(t, gw.busUrl, 'py-tts');

  await ts.respond('llm.think', (event) => ({ thought: `about ${String((event.payload as Frame).topic)}` }));
  const answer = await py.call({ op: 'request', type: 'llm.think', payload: { topic: 'bees' } });
  t.same((answer.reply as Frame).payload, { thought: 'about bees' }, 'Python asks, TypeScript answers');
  t.equal((answer.reply as Frame).source, 'ts-llm');

  await py.call({ op: 'respond', topic: 'tts.>' });
  const reply = await ts.request('tts.speak.now', { text: 'hi' }, { timeout: 5000 });
  t.same(reply.payload, { echo: { text: 'hi' }, by: 'py-tts' }, 'TypeScript asks, Python answers');
});

t.test('topic rules and wildcard matching are the gateway\'s', async (t) => {
  const topics = ['a', 'a.b', 'a.b.c', 'agent.reply', 'agentx', 'x.y', 'a.b.c.d', 'fs\u00a0x', 'tab\there', 'a\ufeff', 'sep\u001fx', 'ü.日本'];
  const patterns = ['a', '*', '>', 'a.*', 'a.>', '*.b', '*.*', 'a.*.c', 'a.>.c', '>.a', 'agent.*', 'a..b', '.a', 'a.', '**', 'a*', 'ü.>', ''];
  const cases = patterns.flatMap((p) => topics.map((topic) => [p, topic] as const));
  // The name rule's edges: lone surrogates (either half), control characters
  // of both ranges, U+FFFD itself, and limits met or passed in UTF-8 bytes.
  const hostile = [
    'q.\ud800', 'q.\udfff', '\ud83d', 'x\ud83d\ude00', 'x\ude00\ud83d', 'q.\ufffd', 'nul\u0000', 'del\u007f', 'c1\u0085', 'c1\u009f', 'nbsp\u00a0ok',
    'rtl\u202e.x', 'q'.repeat(128), 'q'.repeat(129), 'é'.repeat(64), 'é'.repeat(65), '日'.repeat(42) + 'xx', '日'.repeat(43), '😀'.repeat(32), '😀'.repeat(32) + 'x',
  ];
  const names = [...topics, ...patterns, ...hostile];
  const check = PythonProcess.start(t, 'topics_check.py');
  check.send({ cases, names });
  check.child.stdin.end();
  const out = await check.next((l) => 'matches' in l);
  const expected = cases.map(([p, topic]) => isValidPattern(p) && patternMatches(p, topic));
  t.same(out.matches, expected, 'pattern_matches agrees on every case');
  t.same(out.topics, names.map((n) => isValidTopic(n)));
  t.same(out.patterns, names.map((n) => isValidPattern(n)));
  t.same(out.queues, names.map((n) => isValidQueueName(n)));
  t.same(out.problems, names.map((n) => nameProblem(n, 128)), 'the same reasons, in both languages');
  t.equal((await check.exited).code, 0);
});

async function gatewayOnPort(port: number, dataDir: string): Promise<BrainstemApp> {
  const app = await buildApp({ logger: false, dataDir });
  await app.listen({ port, host: '127.0.0.1' });
  return app;
}

t.test('the gateway restarts: the client reconnects, resubscribes, and sends what waited', async (t) => {
  const first = await startGateway(t);
  const py = await startDriver(t, first.busUrl, 'py-restart');
  await py.call({ op: 'subscribe', topic: 'news.>' });
  await py.call({ op: 'publish', type: 'news.one' });
  t.equal(((await py.next((l) => 'event' in l)).event as Frame).type, 'news.one');

  await first.app.close();
  t.equal((await py.next((l) => 'disconnected' in l)).disconnected, 1001, 'the gateway said it is going away');
  // publish waits for its receipt: it resolves once the buffered frame went out on the next connection.
  const buffered = py.call({ op: 'publish', type: 'news.buffered', payload: 'sent while down' });
  t.same((await py.call({ op: 'status' })).connected, false);

  const second = await gatewayOnPort(first.port, first.app.config.dataDir);
  t.teardown(() => second.close());
  await py.next((l) => 'connected' in l, 10_000);
  const restored = (await py.next((l) => 'event' in l)).event as Frame;
  t.equal(restored.type, 'news.buffered', 'the subscription came back before the buffered publish went out');
  t.equal((await buffered).delivered, 1, 'and its receipt came from the new gateway');
  t.equal(second.bus.router.subscriptionCounts()['news.>'], 1, 'subscribed again on the new gateway');

  const ts = await TestSocket.open(`ws://127.0.0.1:${first.port}/bus`);
  t.teardown(() => ts.close());
  ts.send({ action: 'publish', message: { type: 'news.after', payload: 2 } });
  t.equal(((await py.next((l) => 'event' in l)).event as Frame).type, 'news.after');
  await py.call({ op: 'close' });
});

t.test('with tokens: the token opens the bus, a forbidden frame raises FORBIDDEN, no token is refused', async (t) => {
  const token = 'stt-token-0123456789abcdef';
  const gw = await startGateway(t, {
    edge: edgeConfig({ tokens: [tokenSpec('stt', token, { publish: ['transcript.>'], subscribe: ['voice.*', '_inbox.*'], queues: ['transcribe.audio'] })] }),
  });
  const py = await startDriver(t, gw.busUrl, 'stt', { BRAINSTEM_TOKEN: token });
  await py.call({ op: 'subscribe', topic: 'voice.*' });
  const forbidden = await py.call({ op: 'subscribe', topic: 'agent.reply' }).catch((e: Frame) => e);
  t.equal(forbidden.kind, 'BrokerError');
  t.equal(forbidden.code, 'FORBIDDEN', 'the refusal carries its code');
  t.equal(gw.app.bus.router.subscriptionCounts()['agent.reply'] ?? 0, 0, 'and changed nothing');
  t.same(await failure(py.call({ op: 'request', type: 'transcript.final', timeout: 5 })), { kind: 'BrokerError', code: 'NO_RESPONDERS' },
    'its inbox may be subscribed and the request published: only the missing responder stops it');

  const anonymous = PythonProcess.start(t, 'driver.py', [gw.busUrl, 'anonymous']);
  t.equal((await anonymous.exited).code, 1);
  t.match(anonymous.stderr, /ConnectFailed: cannot connect to .*401/, 'connect() without a token fails with the reason');
});
