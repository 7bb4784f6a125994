import type { BusEvent } from '../client/browser.js';
import { patternsOverlap, type RetentionRule } from '../bus/history/retention-rules.js';
import { patternCovers, patternMatches } from '../bus/topic.js';

export interface HistorySource {
  /** The gateway's retention rules (`GET /bus`'s `retained`). */
  rules(): Promise<RetentionRule[]>;
  /** `GET /bus/history?topic=…&last=…`. */
  history(topic: string, last: number): Promise<{ events: BusEvent[] }>;
}

/**
 * The last `count` retained events matching `pattern`, oldest first, for a
 * tail that opens on what already happened. A pattern one rule covers is
 * asked as it is; a wider one (`>`) gathers each overlapping rule's last
 * events and keeps the newest by timestamp. A rule this token may not read
 * is skipped.
 */
export async function lastRetained(source: HistorySource, pattern: string, count: number): Promise<BusEvent[]> {
  const rules = (await source.rules()).filter((rule) => patternsOverlap(rule.topics, pattern));
  const reads = await Promise.all(rules.map((rule) => {
    const topic = patternCovers(rule.topics, pattern) ? pattern : rule.topics;
    return source.history(topic, count).then((read) => read.events, () => [] as BusEvent[]);
  }));
  const events = reads.flat().filter((event) => patternMatches(pattern, event.type));
  if (reads.length > 1) events.sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp));
  return events.slice(-count);
}
