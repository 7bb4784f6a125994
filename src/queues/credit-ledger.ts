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
  /**
   * The pullers with credits: the only one itself (a queue mostly has one
   * at a time), a Map by consumer id once another consumer pulls too (Map
   * order is the round-robin turn order), none once no credit is left.
   */
  private turns: Puller | Map<string, Puller> | undefined;
  private total = 0;

  grant(consumer: TaskConsumer, pullId: PullId): void {
    this.total++;
    const puller = this.pullerOf(consumer.id);
    if (puller) {
      puller.pulls.push(pullId);
      return;
    }
    const added: Puller = { consumer, pulls: [pullId] };
    if (this.turns === undefined) this.turns = added;
    else if (this.turns instanceof Map) this.turns.set(consumer.id, added);
    else this.turns = new Map([[this.turns.consumer.id, this.turns], [consumer.id, added]]);
  }

  get credits(): number {
    return this.total;
  }

  /** Credits one consumer holds. */
  creditsOf(consumerId: string): number {
    return this.pullerOf(consumerId)?.pulls.length ?? 0;
  }

  /** Consumes one credit of the puller whose turn it is; null when none is left. */
  take(): Credit | null {
    const pullers = this.turns;
    if (!(pullers instanceof Map)) {
      if (!pullers) return null;
      if (pullers.consumer.closing) return this.dropAll();
      const pullId = pullers.pulls.shift();
      this.total--;
      if (pullers.pulls.length === 0) this.turns = undefined;
      return { consumer: pullers.consumer, pullId };
    }
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
    return this.dropAll();
  }

  /** Drops every credit of a consumer (it disconnected). */
  drop(consumerId: string): void {
    const puller = this.pullerOf(consumerId);
    if (!puller) return;
    if (this.turns instanceof Map && this.turns.size > 1) this.turns.delete(consumerId);
    else this.turns = undefined;
    this.total -= puller.pulls.length;
  }

  /** The consumers holding credits. */
  pullers(): { consumer: TaskConsumer; credits: number }[] {
    const pullers = this.turns instanceof Map ? [...this.turns.values()] : this.turns ? [this.turns] : [];
    return pullers.map((p) => ({ consumer: p.consumer, credits: p.pulls.length }));
  }

  private pullerOf(consumerId: string): Puller | undefined {
    const turns = this.turns;
    if (turns instanceof Map) return turns.get(consumerId);
    return turns?.consumer.id === consumerId ? turns : undefined;
  }

  /** No credit is left (the pullers left were closing). */
  private dropAll(): null {
    this.turns = undefined;
    this.total = 0;
    return null;
  }
}
