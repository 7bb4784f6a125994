/** Who pulls tasks: a /bus connection satisfies it. */
export interface TaskConsumer {
  readonly id: string;
  /** The connection's name, else its id: the `source` of what it publishes. */
  readonly label: string;
  /** Set once the connection is going away: nothing more reaches it. */
  readonly closing: boolean;
  send(frame: object): void;
}

/** The `id` of a `pull` frame, echoed on the task it brings. */
export type PullId = string | number | undefined;

interface Puller {
  consumer: TaskConsumer;
  /** One entry per outstanding pull, oldest first. */
  pulls: PullId[];
}

export interface Credit {
  consumer: TaskConsumer;
  pullId: PullId;
}

/**
 * The outstanding pulls (credits) per queue. Tasks are handed out round
 * robin over the connections that have credits, so a connection that
 * pulled ten times cannot starve one that pulled once.
 */
export class CreditLedger {
  /** queue -> consumer id -> puller; Map order is the round-robin turn order. */
  private readonly turns = new Map<string, Map<string, Puller>>();
  private readonly totals = new Map<string, number>();
  /** consumer id -> queues where it has credits, to drop them on disconnect. */
  private readonly queuesOf = new Map<string, Set<string>>();

  grant(queue: string, consumer: TaskConsumer, pullId: PullId): void {
    let pullers = this.turns.get(queue);
    if (!pullers) {
      pullers = new Map();
      this.turns.set(queue, pullers);
    }
    const puller = pullers.get(consumer.id);
    if (puller) puller.pulls.push(pullId);
    else pullers.set(consumer.id, { consumer, pulls: [pullId] });
    this.totals.set(queue, (this.totals.get(queue) ?? 0) + 1);
    let queues = this.queuesOf.get(consumer.id);
    if (!queues) {
      queues = new Set();
      this.queuesOf.set(consumer.id, queues);
    }
    queues.add(queue);
  }

  credits(queue: string): number {
    return this.totals.get(queue) ?? 0;
  }

  /** Credits one consumer holds on one queue. */
  creditsOf(queue: string, consumerId: string): number {
    return this.turns.get(queue)?.get(consumerId)?.pulls.length ?? 0;
  }

  /** The queues a consumer pulls, with the credits it holds open on each. */
  pullsOf(consumerId: string): { queue: string; credits: number }[] {
    return [...(this.queuesOf.get(consumerId) ?? [])].map((queue) => ({ queue, credits: this.creditsOf(queue, consumerId) }));
  }

  /** Consumes one credit of the puller whose turn it is; null when none is left. */
  take(queue: string): Credit | null {
    const pullers = this.turns.get(queue);
    if (!pullers) return null;
    for (const [id, puller] of pullers) {
      pullers.delete(id);
      if (puller.consumer.closing) {
        this.forget(queue, id, puller.pulls.length);
        continue;
      }
      const pullId = puller.pulls.shift();
      this.totals.set(queue, (this.totals.get(queue) ?? 1) - 1);
      // Back of the line if it still has credits: the others go first.
      if (puller.pulls.length > 0) pullers.set(id, puller);
      else this.queuesOf.get(id)?.delete(queue);
      if (pullers.size === 0) this.turns.delete(queue);
      return { consumer: puller.consumer, pullId };
    }
    this.turns.delete(queue);
    return null;
  }

  /** Drops every credit of a consumer (it disconnected). */
  drop(consumerId: string): void {
    const queues = this.queuesOf.get(consumerId);
    this.queuesOf.delete(consumerId);
    if (!queues) return;
    for (const queue of queues) {
      const pullers = this.turns.get(queue);
      const puller = pullers?.get(consumerId);
      if (!pullers || !puller) continue;
      pullers.delete(consumerId);
      if (pullers.size === 0) this.turns.delete(queue);
      this.totals.set(queue, (this.totals.get(queue) ?? 0) - puller.pulls.length);
    }
  }

  /** The consumers holding credits on a queue. */
  pullers(queue: string): { consumer: TaskConsumer; credits: number }[] {
    return [...(this.turns.get(queue)?.values() ?? [])].map((p) => ({ consumer: p.consumer, credits: p.pulls.length }));
  }

  private forget(queue: string, consumerId: string, credits: number): void {
    this.totals.set(queue, (this.totals.get(queue) ?? 0) - credits);
    this.queuesOf.get(consumerId)?.delete(queue);
  }
}
