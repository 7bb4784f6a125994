/**
 * Topic and pattern rules of the /bus protocol (spec: "Topics").
 * No Node imports: the clients (browser included) share this file.
 */
export const MAX_TOPIC_LENGTH = 256;
export const MAX_QUEUE_NAME_LENGTH = 128;

const DOT = 0x2e;
const STAR = 0x2a;
const GREATER = 0x3e;

/** Characters no segment may hold besides `.`, `*` and `>`: those \s matches in a RegExp. */
function isSpace(code: number): boolean {
  return (code >= 0x09 && code <= 0x0d) || code === 0x20 || code === 0xa0 || code === 0x1680
    || (code >= 0x2000 && code <= 0x200a) || code === 0x2028 || code === 0x2029 || code === 0x202f
    || code === 0x205f || code === 0x3000 || code === 0xfeff;
}

/**
 * One pass over the characters, without splitting: it runs on every
 * publish. Wildcards, where allowed, are whole segments: `*` anywhere,
 * `>` as the last.
 */
function segmentsAreValid(topic: string, allowWildcards: boolean): boolean {
  let segmentStart = 0;
  const end = topic.length;
  for (let i = 0; i <= end; i++) {
    const code = i === end ? DOT : topic.charCodeAt(i);
    if (code === DOT) {
      if (i === segmentStart) return false;
      segmentStart = i + 1;
      continue;
    }
    if (code === STAR || code === GREATER) {
      const whole = allowWildcards && i === segmentStart && (i + 1 === end || topic.charCodeAt(i + 1) === DOT);
      if (!whole || (code === GREATER && i + 1 !== end)) return false;
      continue;
    }
    if (code <= 0x20 || code >= 0xa0 ? isSpace(code) : false) return false;
  }
  return true;
}

/** A concrete topic, as published: no wildcards. */
export function isValidTopic(topic: unknown, maxLength = MAX_TOPIC_LENGTH): boolean {
  return typeof topic === 'string' && topic.length > 0 && topic.length <= maxLength
    && segmentsAreValid(topic, false);
}

/** A subscription pattern: a topic whose segments may be `*`, or `>` as the last one. */
export function isValidPattern(pattern: unknown): boolean {
  return typeof pattern === 'string' && pattern.length > 0 && pattern.length <= MAX_TOPIC_LENGTH
    && segmentsAreValid(pattern, true);
}

/** A queue name: a topic of at most 128 characters. */
export function isValidQueueName(name: unknown): boolean {
  return isValidTopic(name, MAX_QUEUE_NAME_LENGTH);
}

/** Does `pattern` match the concrete `topic`? (For clients; the gateway uses TopicTrie.) */
export function patternMatches(pattern: string, topic: string): boolean {
  if (pattern === topic) return true;
  const p = pattern.split('.');
  const t = topic.split('.');
  for (let i = 0; i < p.length; i++) {
    const segment = p[i];
    if (segment === '>') return i === p.length - 1 && t.length > i;
    if (i >= t.length) return false;
    if (segment !== '*' && segment !== t[i]) return false;
  }
  return p.length === t.length;
}

/**
 * Does every topic matched by `inner` also match `outer`? Used by permission
 * checks: a token allowed `agent.>` may subscribe to `agent.*.done`.
 */
export function patternCovers(outer: string, inner: string): boolean {
  const o = outer.split('.');
  const n = inner.split('.');
  for (let i = 0; i < o.length; i++) {
    const segment = o[i];
    if (segment === '>') return i < n.length;
    if (i >= n.length) return false;
    const other = n[i];
    if (other === '>') return false;
    if (segment !== '*' && (other === '*' || other !== segment)) return false;
  }
  return o.length === n.length;
}
