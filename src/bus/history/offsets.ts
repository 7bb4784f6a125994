/**
 * Offsets of retained events: Redis Stream entry ids (`MS-SEQ`), ordered
 * within their rule. Clients treat them as opaque strings; `"0"` means
 * "before everything".
 */
const OFFSET_FORMAT = /^(\d{1,20})-(\d{1,20})$/;

/** The offset a client sent, as a stream id; null when it is not an offset. */
export function parseOffset(value: unknown): string | null {
  if (value === '0') return '0-0';
  if (typeof value !== 'string') return null;
  const match = OFFSET_FORMAT.exec(value);
  if (!match) return null;
  const ms = BigInt(match[1] as string);
  const seq = BigInt(match[2] as string);
  // Beyond 64 bits Redis refuses the id: not an offset either.
  if (ms >= 2n ** 64n || seq >= 2n ** 64n) return null;
  return `${ms}-${seq}`;
}

/** Negative, zero or positive as `a` is before, equal to or after `b` (both valid offsets). */
export function compareOffsets(a: string, b: string): number {
  const [am, as] = a.split('-') as [string, string];
  const [bm, bs] = b.split('-') as [string, string];
  if (am.length !== bm.length) return am.length - bm.length;
  if (am !== bm) return am < bm ? -1 : 1;
  if (as.length !== bs.length) return as.length - bs.length;
  return as === bs ? 0 : as < bs ? -1 : 1;
}

const FRAME_TAIL = /"offset":"(\d+-\d+)"\}\}$/;

/**
 * The offset of a serialized event frame (`{"event":{…,"offset":"…"}}`):
 * the gateway always writes it last, so it is read from the frame's tail
 * without parsing the event. Null for an event that has none.
 */
export function offsetOfFrame(frame: Buffer): string | null {
  const tail = frame.toString('latin1', Math.max(0, frame.length - 64));
  return FRAME_TAIL.exec(tail)?.[1] ?? null;
}

const EVENT_OPEN = Buffer.from('{"event":');

/** The frame of a retained event: its stored JSON with the offset added last. */
export function retainedFrame(json: Buffer | string, offset: string): Buffer {
  const body = typeof json === 'string' ? Buffer.from(json) : json;
  return Buffer.concat([EVENT_OPEN, body.subarray(0, body.length - 1), Buffer.from(`,"offset":"${offset}"}}`)]);
}
