import { isValidPattern, patternCovers } from '../topic.js';
import { TopicTrie } from '../topic-trie.js';

/** One retention rule as the operator writes it (`"history"` in the config file, `BUS_HISTORY`). */
export interface RetentionRuleSpec {
  topics: string;
  maxEvents?: number;
  maxAgeSeconds?: number;
}

/** A checked rule, defaults applied. */
export interface RetentionRule {
  topics: string;
  maxEvents: number;
  /** null: kept until `maxEvents` pushes them out. */
  maxAgeSeconds: number | null;
}

export const DEFAULT_MAX_EVENTS = 10_000;
export const MAX_EVENTS_LIMIT = 10_000_000;
export const MAX_AGE_LIMIT_SECONDS = 366 * 86_400;

/**
 * What is retained when the operator says nothing: the queue organ's events
 * (a dashboard or a requester catches up on `queue.completed`/`queue.dead`),
 * and the clients' request inboxes (`_inbox.<id>`, where `request()` waits
 * for its reply), so a reply published while its requester was reconnecting
 * reaches it once it is back.
 */
export const DEFAULT_RULES: readonly RetentionRule[] = Object.freeze([
  { topics: 'queue.>', maxEvents: 10_000, maxAgeSeconds: 86_400 },
  { topics: '_inbox.>', maxEvents: 10_000, maxAgeSeconds: 3_600 },
]);

/** A problem with one rule: `field` is relative to the rule (`topics`, `maxEvents`, … or '' for the rule). */
export interface RuleProblem {
  index: number;
  field: string;
  message: string;
}

/** Is there a topic that both patterns match? (Two rules must not both retain one event.) */
export function patternsOverlap(a: string, b: string): boolean {
  const x = a.split('.');
  const y = b.split('.');
  for (let i = 0; ; i++) {
    const p = x[i];
    const q = y[i];
    if (p === '>') return q !== undefined;
    if (q === '>') return p !== undefined;
    if (p === undefined || q === undefined) return p === q;
    if (p !== '*' && q !== '*' && p !== q) return false;
  }
}

function isWhole(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

/**
 * Checks a parsed rule list. The shape (an array of objects with known
 * fields) is the caller's to check; this checks meaning: patterns, ranges,
 * and that no two rules retain the same topic (an event has one offset).
 */
export function ruleProblems(specs: readonly RetentionRuleSpec[]): RuleProblem[] {
  const problems: RuleProblem[] = [];
  specs.forEach((spec, index) => {
    if (!isValidPattern(spec.topics)) {
      problems.push({ index, field: 'topics', message: `"${String(spec.topics)}" is not a topic pattern (segments separated by ".", "*" for one segment, ">" last for the rest)` });
      return;
    }
    if (spec.maxEvents !== undefined && !isWhole(spec.maxEvents, 1, MAX_EVENTS_LIMIT)) {
      problems.push({ index, field: 'maxEvents', message: `expected a whole number from 1 to ${MAX_EVENTS_LIMIT}` });
    }
    if (spec.maxAgeSeconds !== undefined && !isWhole(spec.maxAgeSeconds, 1, MAX_AGE_LIMIT_SECONDS)) {
      problems.push({ index, field: 'maxAgeSeconds', message: `expected a whole number of seconds from 1 to ${MAX_AGE_LIMIT_SECONDS}` });
    }
    for (let other = 0; other < index; other++) {
      const earlier = specs[other] as RetentionRuleSpec;
      if (isValidPattern(earlier.topics) && patternsOverlap(earlier.topics, spec.topics)) {
        problems.push({ index, field: 'topics', message: `"${spec.topics}" overlaps rule ${other} ("${earlier.topics}"): a topic may be retained by one rule only` });
        break;
      }
    }
  });
  return problems;
}

export function withDefaults(spec: RetentionRuleSpec): RetentionRule {
  return { topics: spec.topics, maxEvents: spec.maxEvents ?? DEFAULT_MAX_EVENTS, maxAgeSeconds: spec.maxAgeSeconds ?? null };
}

const RULE_FIELDS = new Set(['topics', 'maxEvents', 'maxAgeSeconds']);

/** Parses BUS_HISTORY (a JSON array of rules); throws an Error of one line (the config names the setting). */
export function parseRetentionRules(raw: string): RetentionRule[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new Error('expected JSON: [{"topics": "queue.>", "maxEvents": 10000, "maxAgeSeconds": 86400}]');
  }
  if (!Array.isArray(parsed)) throw new Error('expected a JSON array of {"topics", "maxEvents"?, "maxAgeSeconds"?}');
  parsed.forEach((entry: unknown, index) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw new Error(`[${index}]: expected {"topics", "maxEvents"?, "maxAgeSeconds"?}`);
    }
    for (const key of Object.keys(entry)) {
      if (!RULE_FIELDS.has(key)) throw new Error(`[${index}].${key}: unknown field (topics, maxEvents, maxAgeSeconds)`);
    }
    if (typeof (entry as { topics?: unknown }).topics !== 'string') throw new Error(`[${index}].topics: expected a topic pattern`);
  });
  const specs = parsed as RetentionRuleSpec[];
  const [problem] = ruleProblems(specs);
  if (problem) throw new Error(`[${problem.index}].${problem.field}: ${problem.message}`);
  return specs.map(withDefaults);
}

/**
 * The rules in force, indexed so that finding the rule of a published type
 * walks a trie (cost grows with the topic's depth, not with the rules), and
 * a topic no rule matches pays one short walk.
 */
export class RetentionRules {
  readonly list: readonly RetentionRule[];
  private readonly trie = new TopicTrie<number>();

  constructor(rules: readonly RetentionRule[]) {
    this.list = rules;
    rules.forEach((rule, index) => this.trie.add(rule.topics, index));
  }

  get size(): number {
    return this.list.length;
  }

  /** Index of the rule retaining events of this type, or -1. */
  ruleOf(type: string): number {
    // Rules never overlap: one matches at most.
    for (const index of this.trie.subscribersOf(type)) return index;
    return -1;
  }

  /** Index of the one rule that retains every topic `pattern` matches, or -1. */
  ruleCovering(pattern: string): number {
    return this.list.findIndex((rule) => patternCovers(rule.topics, pattern));
  }
}
