/**
 * Subscription index: patterns to subscribers, matched per segment so the
 * cost of a publish grows with the topic's depth and the wildcards on its
 * path, never with the number of subscribed patterns.
 */
/**
 * One segment of the index. Its collections are created on first use: with
 * thousands of connections each on a topic of its own, most nodes hold one
 * subscriber and no children, and empty Maps and Sets cost ~200 bytes each.
 */
class TrieNode<T> {
  children: Map<string, TrieNode<T>> | null = null;
  /** Subscribers whose pattern ends exactly here. */
  exact: Set<T> | null = null;
  /** Subscribers whose pattern ends here with `>`: one or more further segments. */
  rest: Set<T> | null = null;

  isEmpty(): boolean {
    return !this.children?.size && !this.exact?.size && !this.rest?.size;
  }
}

const NONE: ReadonlySet<never> = new Set<never>();

export class TopicTrie<T> {
  private readonly root = new TrieNode<T>();
  /** pattern -> subscriber count, for introspection (`GET /bus`). */
  private readonly counts = new Map<string, number>();
  /** The sets one lookup matched: one array for every lookup, which never calls out. */
  private readonly matched: Set<T>[] = [];

  add(pattern: string, subscriber: T): boolean {
    const segments = pattern.split('.');
    let node = this.root;
    const last = segments.length - 1;
    for (let i = 0; i < last; i++) node = this.child(node, segments[i] as string);
    const final = segments[last] as string;
    let set: Set<T>;
    if (final === '>') {
      set = node.rest ??= new Set<T>();
    } else {
      const leaf = this.child(node, final);
      set = leaf.exact ??= new Set<T>();
    }
    if (set.has(subscriber)) return false;
    set.add(subscriber);
    this.counts.set(pattern, (this.counts.get(pattern) ?? 0) + 1);
    return true;
  }

  remove(pattern: string, subscriber: T): boolean {
    const segments = pattern.split('.');
    const path: TrieNode<T>[] = [this.root];
    let node: TrieNode<T> | undefined = this.root;
    const last = segments.length - 1;
    for (let i = 0; i < last && node; i++) {
      node = node.children?.get(segments[i] as string);
      if (node) path.push(node);
    }
    if (!node) return false;
    const final = segments[last] as string;
    let removed: boolean;
    if (final === '>') {
      removed = node.rest?.delete(subscriber) ?? false;
      if (node.rest?.size === 0) node.rest = null;
    } else {
      const leaf = node.children?.get(final);
      removed = leaf?.exact?.delete(subscriber) ?? false;
      if (leaf) {
        if (leaf.exact?.size === 0) leaf.exact = null;
        path.push(leaf);
      }
    }
    if (!removed) return false;
    const count = (this.counts.get(pattern) ?? 1) - 1;
    if (count === 0) this.counts.delete(pattern);
    else this.counts.set(pattern, count);
    this.prune(path, segments);
    return true;
  }

  /**
   * Every subscriber with a pattern matching `topic`, once each. Most
   * topics match one pattern: its own set is returned as it is, not copied,
   * so read it before the trie changes.
   */
  subscribersOf(topic: string): ReadonlySet<T> {
    const matched = this.matched;
    this.collect(this.root, topic.split('.'), 0, matched);
    let subscribers: ReadonlySet<T>;
    if (matched.length <= 1) subscribers = matched[0] ?? (NONE as ReadonlySet<T>);
    else {
      const union = new Set<T>();
      for (const set of matched) for (const s of set) union.add(s);
      subscribers = union;
    }
    matched.length = 0;
    return subscribers;
  }

  /** Whether any subscriber has a pattern matching `topic`. */
  hasMatch(topic: string): boolean {
    return this.anyMatch(this.root, topic.split('.'), 0);
  }

  /** Number of subscribers per pattern. */
  patternCounts(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }

  get patternCount(): number {
    return this.counts.size;
  }

  /** Subscribers of exactly this pattern (0 when none). */
  countOf(pattern: string): number {
    return this.counts.get(pattern) ?? 0;
  }

  /** Every pattern with at least one subscriber. */
  patterns(): IterableIterator<string> {
    return this.counts.keys();
  }

  private collect(node: TrieNode<T>, segments: string[], depth: number, matched: Set<T>[]): void {
    if (depth === segments.length) {
      if (node.exact) matched.push(node.exact);
      return;
    }
    if (node.rest) matched.push(node.rest);
    const children = node.children;
    if (!children) return;
    const named = children.get(segments[depth] as string);
    if (named) this.collect(named, segments, depth + 1, matched);
    const star = children.get('*');
    if (star) this.collect(star, segments, depth + 1, matched);
  }

  private anyMatch(node: TrieNode<T>, segments: string[], depth: number): boolean {
    if (depth === segments.length) return (node.exact?.size ?? 0) > 0;
    if ((node.rest?.size ?? 0) > 0) return true;
    const named = node.children?.get(segments[depth] as string);
    if (named && this.anyMatch(named, segments, depth + 1)) return true;
    const star = node.children?.get('*');
    return star !== undefined && this.anyMatch(star, segments, depth + 1);
  }

  private child(node: TrieNode<T>, segment: string): TrieNode<T> {
    const children = node.children ??= new Map<string, TrieNode<T>>();
    let next = children.get(segment);
    if (!next) {
      next = new TrieNode<T>();
      children.set(segment, next);
    }
    return next;
  }

  /** Drops the empty nodes left at the end of a removed pattern's path. */
  private prune(path: TrieNode<T>[], segments: string[]): void {
    for (let i = path.length - 1; i > 0; i--) {
      const node = path[i] as TrieNode<T>;
      if (!node.isEmpty()) return;
      const parent = path[i - 1] as TrieNode<T>;
      parent.children?.delete(segments[i - 1] as string);
      if (parent.children?.size === 0) parent.children = null;
    }
  }
}
