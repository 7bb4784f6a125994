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
 * One queue's outstanding pulls (credits). Tasks are handed out round
 * robin over the connections that have credits, so a connection that
 * pulled ten times cannot starve one that pulled once.
 */
export class CreditLedger {
  /** consumer id -> puller; Map order is the round-robin turn order. Made on the first pull, dropped when none is left. */
  private turns: Map<string, Puller> | undefined;
  private total = 0;

  grant(consumer: TaskConsumer, pullId: PullId): void {
    this.turns ??= new Map();
    const puller = this.turns.get(consumer.id);
    if (puller) puller.pulls.push(pullId);
    else this.turns.set(consumer.id, { consumer, pulls: [pullId] });
    this.total++;
  }

  get credits(): number {
    return this.total;
  }

  /** Credits one consumer holds. */
  creditsOf(consumerId: string): number {
    return this.turns?.get(consumerId)?.pulls.length ?? 0;
  }

  /** Consumes one credit of the puller whose turn it is; null when none is left. */
  take(): Credit | null {
    const pullers = this.turns;
    if (!pullers) return null;
    for (const [id, puller] of pullers) {
      pullers.delete(id);
      if (puller.consumer.closing) {
        this.total -= puller.pulls.length;
        continue;
      }
      const pullId = puller.pulls.shift();
      this.total--;
      // Back of the line if it still has credits: the others go first.
      if (puller.pulls.length > 0) pullers.set(id, puller);
      if (pullers.size === 0) this.turns = undefined;
      return { consumer: puller.consumer, pullId };
    }
    this.turns = undefined;
    return null;
  }

  /** Drops every credit of a consumer (it disconnected). */
  drop(consumerId: string): void {
    const puller = this.turns?.get(consumerId);
    if (!this.turns || !puller) return;
    this.turns.delete(consumerId);
    if (this.turns.size === 0) this.turns = undefined;
    this.total -= puller.pulls.length;
  }

  /** The consumers holding credits. */
  pullers(): { consumer: TaskConsumer; credits: number }[] {
    return [...(this.turns?.values() ?? [])].map((p) => ({ consumer: p.consumer, credits: p.pulls.length }));
  }
}
