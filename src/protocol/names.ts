/**
 * The one rule for every string that becomes a Redis key or a routing key:
 * topics and patterns, queue names, task ids, msgIds, service and heartbeat
 * names. A name is well-formed Unicode (a lone surrogate is encoded one way
 * by one Redis path and another way by the next, so two names would share
 * keys), holds no control character, and fits a limit counted in UTF-8
 * bytes, which is what Redis stores. A name that breaks it is refused,
 * never rewritten. The Python client's `names.py` is the same rule; the
 * shared vectors in test/python-client.test.ts hold them together.
 * No Node imports: the clients (browser included) share this file.
 */

export const MAX_TOPIC_BYTES = 256;
export const MAX_QUEUE_NAME_BYTES = 128;
export const MAX_TASK_ID_BYTES = 256;
export const MAX_MSG_ID_BYTES = 128;
/** Service, heartbeat and connection names. */
export const MAX_SERVICE_NAME_BYTES = 200;

function hex(code: number): string {
  return `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * Why `name` breaks the rule, or null when it keeps it. One pass over the
 * UTF-16 code units: a name is checked on every publish.
 */
export function nameProblem(name: string, maxBytes: number): string | null {
  const length = name.length;
  if (length === 0) return 'is empty';
  // A name longer in UTF-16 units than the limit in bytes is over it however it is spelled.
  if (length > maxBytes) return `is longer than ${maxBytes} bytes in UTF-8`;
  let bytes = 0;
  for (let i = 0; i < length; i++) {
    const code = name.charCodeAt(i);
    if (code < 0x80) {
      if (code < 0x20 || code === 0x7f) return `holds the control character ${hex(code)} at index ${i}`;
      bytes += 1;
    } else if (code < 0x800) {
      if (code <= 0x9f) return `holds the control character ${hex(code)} at index ${i}`;
      bytes += 2;
    } else if (code >= 0xd800 && code <= 0xdfff) {
      const next = i + 1 < length ? name.charCodeAt(i + 1) : 0;
      if (code > 0xdbff || next < 0xdc00 || next > 0xdfff) return `holds a lone surrogate (${hex(code)}) at index ${i}`;
      bytes += 4;
      i++;
    } else {
      bytes += 3;
    }
  }
  return bytes > maxBytes ? `is ${bytes} bytes in UTF-8, more than ${maxBytes}` : null;
}

/** A string that keeps the name rule. */
export function isName(value: unknown, maxBytes: number): value is string {
  return typeof value === 'string' && nameProblem(value, maxBytes) === null;
}

/** `value` quoted for an error message, cut short: a refusal never echoes a whole hostile name. */
export function quoted(value: string): string {
  return JSON.stringify(value.length > 200 ? `${value.slice(0, 200)}…` : value);
}
