import { BusError, type BusEvent, type PublishedMessage } from './protocol.js';
import { topicProblem } from './topic.js';
import { MAX_MSG_ID_BYTES, nameProblem, quoted } from '../protocol/names.js';
import { isTraceparent } from '../trace/trace-context.js';

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

let isoAt = Number.NaN;
let iso = '';

/** The ISO time of `now`, formatted once per millisecond: a busy bus publishes many events in each. */
function isoTime(now: number): string {
  if (now !== isoAt) {
    iso = new Date(now).toISOString();
    isoAt = now;
  }
  return iso;
}

/**
 * Turns a published message into the event subscribers receive
 * (spec: "Events"). Throws BusError for a message a subscriber could not
 * trust: a missing or wildcard type, mistyped optional fields. `token` is
 * the publisher's token name (null with auth off): only the gateway sets it,
 * a `token` field of the message is never copied.
 */
export function normalizeMessage(message: unknown, defaultSource: string, token: string | null = null, now = Date.now()): BusEvent {
  if (!isPlainObject(message)) throw new BusError('INVALID_FRAME', 'message must be an object');
  const m = message as PublishedMessage;
  if (typeof m.type !== 'string') throw new BusError('INVALID_FRAME', 'message.type must be a string');
  const typeProblem = topicProblem(m.type, false);
  if (typeProblem !== null) throw new BusError('INVALID_TOPIC', `invalid topic: message.type ${typeProblem}: ${quoted(m.type)}`);
  if (m.source !== undefined && m.source !== null && typeof m.source !== 'string') {
    throw new BusError('INVALID_FRAME', 'message.source must be a string');
  }
  if (m.timestamp !== undefined && m.timestamp !== null && typeof m.timestamp !== 'string') {
    throw new BusError('INVALID_FRAME', 'message.timestamp must be a string');
  }
  const correlationId = m.correlationId;
  if (correlationId !== undefined && correlationId !== null
    && typeof correlationId !== 'string' && typeof correlationId !== 'number') {
    throw new BusError('INVALID_FRAME', 'message.correlationId must be a string or a number');
  }
  if (m.replyTo !== undefined && m.replyTo !== null) {
    const problem = typeof m.replyTo === 'string' ? topicProblem(m.replyTo, false) : 'is not a string';
    if (problem !== null) throw new BusError('INVALID_TOPIC', `message.replyTo must be a valid topic: it ${problem}`);
  }
  const { traceparent } = m;
  if (traceparent !== undefined && traceparent !== null && !isTraceparent(traceparent)) {
    throw new BusError('INVALID_FRAME', 'message.traceparent must be a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)');
  }
  if (m.msgId !== undefined && m.msgId !== null) {
    const problem = typeof m.msgId === 'string' ? nameProblem(m.msgId, MAX_MSG_ID_BYTES) : 'is not a string';
    if (problem !== null) {
      throw new BusError('INVALID_FRAME', `message.msgId must be a name of 1 to ${MAX_MSG_ID_BYTES} UTF-8 bytes without control characters: it ${problem}`);
    }
  }
  const event: BusEvent = {
    type: m.type,
    source: m.source || defaultSource,
    payload: m.payload === undefined ? null : m.payload,
    timestamp: m.timestamp || isoTime(now),
  };
  if (correlationId !== undefined && correlationId !== null && correlationId !== '') event.correlationId = correlationId;
  if (typeof m.replyTo === 'string') event.replyTo = m.replyTo;
  if (typeof traceparent === 'string') event.traceparent = traceparent;
  if (token !== null) event.token = token;
  if (typeof m.msgId === 'string') event.msgId = m.msgId;
  return event;
}
