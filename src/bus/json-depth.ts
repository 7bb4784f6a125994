/**
 * How deep JSON may nest on the bus. Recursive walks (JSON.stringify, a
 * library's clone, Python's json) overflow their stack a few thousand
 * levels down; a house's messages nest a few levels. A deeper frame is
 * refused as INVALID_FRAME instead of failing somewhere later.
 */
export const MAX_JSON_DEPTH = 256;

const OPEN_OBJECT = 0x7b;
const OPEN_ARRAY = 0x5b;
const CLOSE_OBJECT = 0x7d;
const CLOSE_ARRAY = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Does the JSON text (already known to parse) nest deeper than `max`? One
 * pass over the structure, strings jumped over, their brackets ignored.
 * Text that parses needs an opening and a closing bracket per level, so
 * one shorter than twice `max + 1` cannot, and is not scanned.
 */
export function nestsDeeperThan(text: Buffer | string, max = MAX_JSON_DEPTH): boolean {
  if (text.length < 2 * (max + 1)) return false;
  const raw = typeof text === 'string' ? Buffer.from(text) : text;
  let depth = 0;
  for (let i = 0; i < raw.length; i++) {
    const byte = raw[i];
    if (byte === QUOTE) {
      i = closingQuote(raw, i);
      if (i < 0) return false;
    } else if (byte === OPEN_OBJECT || byte === OPEN_ARRAY) {
      if (++depth > max) return true;
    } else if (byte === CLOSE_OBJECT || byte === CLOSE_ARRAY) {
      depth--;
    }
  }
  return false;
}

/** Where the string opened at `start` ends (memchr jumps over its text), or -1. */
function closingQuote(raw: Buffer, start: number): number {
  let at = start;
  for (;;) {
    at = raw.indexOf(QUOTE, at + 1);
    if (at < 0) return -1;
    let backslashes = 0;
    while (raw[at - 1 - backslashes] === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return at;
  }
}

/** The same for a value already parsed (an HTTP body), without recursion. */
export function valueNestsDeeperThan(value: unknown, max = MAX_JSON_DEPTH): boolean {
  const pending: [unknown, number][] = [[value, 0]];
  while (pending.length > 0) {
    const [item, depth] = pending.pop() as [unknown, number];
    if (typeof item !== 'object' || item === null) continue;
    if (depth + 1 > max) return true;
    for (const child of Object.values(item)) if (typeof child === 'object' && child !== null) pending.push([child, depth + 1]);
  }
  return false;
}
