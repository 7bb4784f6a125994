/**
 * W3C trace context (`traceparent`: version-traceid-parentid-flags, lower
 * case hex). Version ff and all-zero ids are invalid by the spec; a later
 * version may append fields, version 00 may not.
 */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE_ID = '0'.repeat(32);
const ZERO_SPAN_ID = '0'.repeat(16);

export function isTraceparent(value: unknown): value is string {
  if (typeof value !== 'string' || value.length > 512) return false;
  const match = TRACEPARENT.exec(value);
  if (!match) return false;
  const [, version, traceId, spanId, , rest] = match;
  if (version === 'ff' || traceId === ZERO_TRACE_ID || spanId === ZERO_SPAN_ID) return false;
  return version !== '00' || rest === undefined;
}

/** The trace id of a valid traceparent (for log lines). */
export function traceIdOf(traceparent: string): string {
  return traceparent.slice(3, 35);
}
