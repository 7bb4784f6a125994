import fc from 'fast-check';

/**
 * What the fuzzer sends: frames built from the protocol's actions and
 * fields, with hostile values mixed in. Queue names come from a fixed set,
 * so that a long run touches a bounded number of queues (each one costs the
 * gateway Redis connections) while pulls, acks and cancels land on the
 * very names the enqueues used.
 */

/** Names of every kind the name rule must sort: valid, refused, and valid but odd. */
export const QUEUE_NAMES = [
  'q.a', 'q.b', 'names.\ufffd', 'q.\ud800', 'q.\udfff', 'q.\ud83d', 'q.é', 'q.😀', 'rtl\u202e.x',
  'nul\u0000', 'del\u007f', 'c1\u0085', '__proto__', 'constructor', 'toString', 'hasOwnProperty',
  'q:colon', 'a.*', 'a.>', '>', '', ' ', 'a..b', 'é'.repeat(65), 'x'.repeat(300), '😀'.repeat(40),
  'id', 'meta', 'wait', 'events',
] as const;

const UNITS = ['a', 'b', '.', '*', '>', ' ', '\u0000', '\u001f', '\u007f', '\u0085', '\u00a0', '\ud800', '\udc00', '\ufffd', 'é', '😀', '\u202e', ':', '\\', '"'];

/** Short strings over an alphabet of the characters the rules care about: random topics, ids, names. */
export const oddString = fc.string({ unit: fc.constantFrom(...UNITS), maxLength: 8 });

export const hostileString = fc.oneof(
  oddString,
  fc.constantFrom(...QUEUE_NAMES),
  fc.constantFrom('x'.repeat(257), 'é'.repeat(129), '😀'.repeat(65), '0', '00', '1', '-1', '1e3', 'NaN'),
);

export const hostileNumber = fc.constantFrom(-0, 0, 1, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, 2 ** 31, 2 ** 21, 5e-324, 1000, 1001);

/** A JSON value of any shape, hostile numbers and strings included. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: hostileNumber },
  { weight: 1, arbitrary: hostileString },
  { weight: 1, arbitrary: fc.constantFrom(null, true, false, [], {}, '', [[[[]]]]) },
);

/** A topic or pattern: valid-looking, random, or hostile. */
const topic = fc.oneof(
  fc.constantFrom('fz.a', 'fz.b', 'fz.*', 'fz.>', '>', '*', 'fz.\ufffd', '_inbox.fz', 'queue.fz', 'heartbeat.fz'),
  hostileString,
);

/** A task id, or a reference (resolved when sent) to one the run has seen. */
export interface TaskRef {
  ref: number;
}
const taskId: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.nat(8).map((ref): TaskRef => ({ ref })) },
  { weight: 1, arbitrary: hostileString },
  { weight: 1, arbitrary: hostileNumber },
);

const queue = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...QUEUE_NAMES) }, { weight: 1, arbitrary: hostileValue });

const opts = fc.record({
  priority: hostileNumber, delay: fc.constantFrom(0, 1, 5, -0, 1e308), attempts: hostileNumber,
  backoff: fc.oneof(hostileNumber, fc.record({ type: fc.constantFrom('fixed', 'exponential', 'x'), delay: hostileNumber })),
  jobId: hostileString, replyTo: topic, timeout: hostileNumber, traceparent: fc.constantFrom('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'x'),
  stray: hostileValue,
}, { requiredKeys: [] });

const message = fc.record({
  type: topic, payload: hostileValue, source: hostileValue, timestamp: hostileValue, correlationId: hostileValue,
  replyTo: topic, msgId: hostileString, traceparent: hostileValue,
}, { requiredKeys: ['type'] });

function frameOf(action: string, fields: fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<Record<string, unknown>> {
  return fields.map((f) => ({ action, ...f }));
}

/** One frame of the protocol, its fields well or badly formed. */
export const protocolFrame: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  frameOf('enqueue', fc.record({ queue, task: hostileValue, opts: fc.oneof(opts, hostileValue) }, { requiredKeys: ['queue', 'task'] })),
  frameOf('pull', fc.record({ queue, credits: hostileNumber }, { requiredKeys: ['queue'] })),
  frameOf('ack', fc.record({ taskId, result: hostileValue }, { requiredKeys: ['taskId'] })),
  frameOf('fail', fc.record({ taskId, reason: hostileValue }, { requiredKeys: ['taskId'] })),
  frameOf('progress', fc.record({ taskId, progress: hostileValue }, { requiredKeys: ['taskId'] })),
  frameOf('cancel', fc.record({ queue, taskId, reason: hostileValue }, { requiredKeys: ['queue', 'taskId'] })),
  frameOf('subscribe', fc.record({ topic, since: hostileValue, last: hostileNumber }, { requiredKeys: ['topic'] })),
  frameOf('unsubscribe', fc.record({ topic }, { requiredKeys: ['topic'] })),
  frameOf('publish', fc.record({ message: fc.oneof({ weight: 4, arbitrary: message }, { weight: 1, arbitrary: hostileValue }) })),
  frameOf('ping', fc.constant({})),
  fc.record({ action: hostileValue, topic, queue, taskId }, { requiredKeys: ['action'] }),
);

/**
 * Frames as text the JSON encoder would never write: broken JSON, keys
 * that are prototype names, numbers JSON.stringify rewrites, deep nesting.
 * Their enqueues carry the queue in the payload, as `fuzzRun` tags the others.
 */
export const rawFrame: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '{', '}', '[]', 'null', '1', '"x"', '{"action":', '{"action":"enqueue",}', '\u0000', '',
    '{"action":"enqueue","queue":"q.a","task":{"fzQueue":"q.a","value":{"__proto__":{"polluted":1}}},"opts":{"__proto__":{"attempts":1}}}',
    '{"__proto__":{"action":"ping"}}', '{"action":"__proto__"}', '{"action":"constructor","id":1}',
    '{"action":"pull","queue":"q.a","id":-0}', '{"action":"ack","taskId":1e400}', '{"action":"ack","taskId":-0}',
    '{"action":"enqueue","queue":"q.a","task":{"fzQueue":"q.a","value":1},"opts":{"delay":1e400,"priority":-0}}',
    '{"action":"publish","message":{"type":"fz.a","msgId":"m","__proto__":{"type":"x"}}}',
    '{"action":"pull","queue":"q.a","id":{"nested":true}}', '{"action":"ping","id":9007199254740993}',
    '{"action":"enqueue","queue":"q.\\ud800","task":{"fzQueue":"q.\\ud800","value":"x"}}', '{"action":"pull","queue":"q.\\ud800"}',
    '{"action":"enqueue","queue":"names.\\ufffd","task":{"fzQueue":"names.\\ufffd","value":"x"}}', '{"action":"pull","queue":"names.\\ufffd"}',
  ),
  fc.nat(3000).map((depth) => `{"action":"publish","message":{"type":"fz.a","payload":${'['.repeat(depth)}${']'.repeat(depth)}}}`),
  fc.nat(3000).map((depth) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`),
);

/** One step of a run: a frame on one of the connections. */
export type Step =
  | { conn: number; kind: 'json'; frame: Record<string, unknown>; withId: boolean }
  | { conn: number; kind: 'raw'; text: string }
  | { conn: number; kind: 'binary'; bytes: Uint8Array };

export function stepsOf(connections: number, maxSteps: number): fc.Arbitrary<Step[]> {
  const conn = fc.nat(connections - 1);
  const step: fc.Arbitrary<Step> = fc.oneof(
    { weight: 12, arbitrary: fc.record({ conn, frame: protocolFrame, withId: fc.boolean() }).map((s): Step => ({ kind: 'json', ...s })) },
    { weight: 2, arbitrary: fc.record({ conn, text: rawFrame }).map((s): Step => ({ kind: 'raw', ...s })) },
    { weight: 1, arbitrary: fc.record({ conn, bytes: fc.uint8Array({ maxLength: 64 }) }).map((s): Step => ({ kind: 'binary', ...s })) },
  );
  return fc.array(step, { minLength: 1, maxLength: maxSteps, size: 'max' });
}
