/**
 * A JSON parser that remembers where each value starts, so that a mistake
 * found later (by schema or by meaning) can be reported with its line.
 * JSON.parse cannot do that, and its syntax messages differ between Node
 * versions.
 */
export interface JsonLocation {
  line: number;
  column: number;
}

export class JsonSyntaxError extends Error {
  constructor(message: string, readonly location: JsonLocation) {
    super(message);
    this.name = 'JsonSyntaxError';
  }
}

export interface LocatedJson {
  value: unknown;
  /** Where the value at a JSON pointer starts; the nearest existing ancestor if it is absent. */
  locate(pointer: string): JsonLocation;
}

export function escapePointerSegment(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function parseJsonWithLocations(text: string): LocatedJson {
  const offsets = new Map<string, number>();
  const lineStarts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === '\n') lineStarts.push(i + 1);

  function locationOf(offset: number): JsonLocation {
    let low = 0;
    let high = lineStarts.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if ((lineStarts[mid] as number) <= offset) low = mid;
      else high = mid - 1;
    }
    return { line: low + 1, column: offset - (lineStarts[low] as number) + 1 };
  }

  let i = 0;
  const fail = (what: string, at = i): never => {
    const found = at >= text.length ? 'end of file' : JSON.stringify(text[at]);
    throw new JsonSyntaxError(`${what}, found ${found}`, locationOf(at));
  };
  const skipSpace = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };

  function parseString(): string {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') {
      const code = text.charCodeAt(i);
      if (code < 0x20) fail('control character in a string');
      i += text[i] === '\\' ? 2 : 1;
    }
    if (i >= text.length) fail('unterminated string', start);
    i++;
    try {
      return JSON.parse(text.slice(start, i)) as string;
    } catch {
      return fail('invalid escape in a string', start);
    }
  }

  function parseValue(pointer: string): unknown {
    skipSpace();
    offsets.set(pointer, i);
    const char = text[i];
    if (char === '{') return parseObject(pointer);
    if (char === '[') return parseArray(pointer);
    if (char === '"') return parseString();
    for (const [word, value] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return value;
      }
    }
    const number = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 64));
    if (number) {
      i += number[0].length;
      return Number(number[0]);
    }
    return fail('expected a value');
  }

  function parseObject(pointer: string): Record<string, unknown> {
    const object: Record<string, unknown> = {};
    i++;
    skipSpace();
    if (text[i] === '}') {
      i++;
      return object;
    }
    for (;;) {
      skipSpace();
      if (text[i] !== '"') fail('expected a "quoted" field name');
      const keyAt = i;
      const key = parseString();
      // JSON.parse keeps the last of two equal fields; a reader of the file may
      // well see the first ("admin": false … "admin": true). Refuse the doubt.
      if (Object.hasOwn(object, key)) {
        const first = locationOf(offsets.get(`${pointer}/${escapePointerSegment(key)}`) ?? keyAt);
        throw new JsonSyntaxError(`duplicate field "${key}" (its first value is on line ${first.line})`, locationOf(keyAt));
      }
      skipSpace();
      if (text[i] !== ':') fail(`expected ':' after "${key}"`);
      i++;
      const value = parseValue(`${pointer}/${escapePointerSegment(key)}`);
      Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
      skipSpace();
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text[i] === '}') {
        i++;
        return object;
      }
      fail("expected ',' or '}'");
    }
  }

  function parseArray(pointer: string): unknown[] {
    const array: unknown[] = [];
    i++;
    skipSpace();
    if (text[i] === ']') {
      i++;
      return array;
    }
    for (;;) {
      array.push(parseValue(`${pointer}/${array.length}`));
      skipSpace();
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text[i] === ']') {
        i++;
        return array;
      }
      fail("expected ',' or ']'");
    }
  }

  // A byte-order mark is invisible in editors; accept it rather than report it.
  if (text.charCodeAt(0) === 0xfeff) i = 1;
  const value = parseValue('');
  skipSpace();
  if (i < text.length) fail('unexpected text after the end of the document');

  return {
    value,
    locate(pointer) {
      let candidate = pointer;
      while (!offsets.has(candidate) && candidate !== '') candidate = candidate.slice(0, candidate.lastIndexOf('/'));
      return locationOf(offsets.get(candidate) ?? 0);
    },
  };
}
