import { MAX_QUEUE_NAME_BYTES, MAX_TOPIC_BYTES, nameProblem } from '../protocol/names.js';

/**
 * Topic and pattern rules of the /bus protocol (spec: "Topics"), on top of
 * the name rule every key obeys (src/protocol/names.ts).
 * No Node imports: the clients (browser included) share this file.
 */

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

/**
 * Why `topic` is not a valid topic (or, with `wildcards`, pattern), or null:
 * the name rule first, then the segments.
 */
export function topicProblem(topic: string, wildcards: boolean, maxBytes = MAX_TOPIC_BYTES): string | null {
  const problem = nameProblem(topic, maxBytes);
  if (problem !== null) return problem;
  if (!segmentsAreValid(topic, wildcards)) {
    return wildcards
      ? 'has an empty segment, whitespace, or a wildcard that is not a whole segment (`*`, or `>` last)'
      : 'has an empty segment, whitespace, or a wildcard';
  }
  return null;
}

/** A concrete topic, as published: no wildcards. */
export function isValidTopic(topic: unknown, maxBytes = MAX_TOPIC_BYTES): boolean {
  return typeof topic === 'string' && topicProblem(topic, false, maxBytes) === null;
}

/** A subscription pattern: a topic whose segments may be `*`, or `>` as the last one. */
export function isValidPattern(pattern: unknown): boolean {
  return typeof pattern === 'string' && topicProblem(pattern, true) === null;
}

/** A queue name: a topic of at most MAX_QUEUE_NAME_BYTES. */
export function isValidQueueName(name: unknown): boolean {
  return isValidTopic(name, MAX_QUEUE_NAME_BYTES);
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
