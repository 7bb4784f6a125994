/**
 * Topic and pattern rules of the /bus protocol (spec: "Topics").
 * No Node imports: the clients (browser included) share this file.
 */
export const MAX_TOPIC_LENGTH = 256;
export const MAX_QUEUE_NAME_LENGTH = 128;

const FORBIDDEN_IN_SEGMENT = /[\s.*>]/;

function segmentsAreValid(segments: string[], allowWildcards: boolean): boolean {
  const last = segments.length - 1;
  for (let i = 0; i <= last; i++) {
    const segment = segments[i] as string;
    if (allowWildcards && segment === '*') continue;
    if (allowWildcards && segment === '>' && i === last) continue;
    if (segment.length === 0 || FORBIDDEN_IN_SEGMENT.test(segment)) return false;
  }
  return true;
}

/** A concrete topic, as published: no wildcards. */
export function isValidTopic(topic: unknown, maxLength = MAX_TOPIC_LENGTH): boolean {
  return typeof topic === 'string' && topic.length > 0 && topic.length <= maxLength
    && segmentsAreValid(topic.split('.'), false);
}

/** A subscription pattern: a topic whose segments may be `*`, or `>` as the last one. */
export function isValidPattern(pattern: unknown): boolean {
  return typeof pattern === 'string' && pattern.length > 0 && pattern.length <= MAX_TOPIC_LENGTH
    && segmentsAreValid(pattern.split('.'), true);
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
