import type { BusEvent } from '../protocol.js';

/** A stored event: its JSON, and its offset ('' when not retained; null: a repeated msgId). */
export interface Stored {
  /** The event's JSON, encoded once: sent to Redis and into the frame as it is. */
  json: Buffer;
  offset: string | null;
}

/** What a publish did: local deliveries, the event's offset when retained, whether its msgId was a repeat. */
export type Published = {
  delivered: number;
  offset?: string;
  duplicate?: true;
};

/** The router's two ways to publish, as the order needs them: stored first, or direct. */
export interface PublishPath {
  storesFirst(event: BusEvent): boolean;
  store(event: BusEvent): Promise<Stored>;
  deliverStored(event: BusEvent, stored: Stored): Published;
  publishNow(event: BusEvent): number;
}

interface Pending {
  event: BusEvent;
  /** null while its store is in flight (or for a direct event, never stored). */
  outcome: { stored: Stored } | { error: unknown } | { direct: true } | null;
  resolve(published: Published): void;
  reject(err: unknown): void;
}

/**
 * One connection's publishes, delivered in the order it sent them although
 * some are stored in Redis first (retained topics, msgId) and others are
 * not: a direct event published behind a stored one waits for it. A
 * connection with nothing in flight never gets one (its direct publishes
 * take the router's direct path).
 */
export class PublishOrder {
  private readonly queue: Pending[] = [];

  constructor(private readonly router: PublishPath) {}

  get idle(): boolean {
    return this.queue.length === 0;
  }

  publish(event: BusEvent): Promise<Published> {
    return new Promise<Published>((resolve, reject) => {
      const pending: Pending = { event, outcome: null, resolve, reject };
      this.queue.push(pending);
      if (!this.router.storesFirst(event)) {
        pending.outcome = { direct: true };
        this.drain();
        return;
      }
      this.router.store(event).then(
        (stored) => { pending.outcome = { stored }; this.drain(); },
        (error: unknown) => { pending.outcome = { error }; this.drain(); },
      );
    });
  }

  /** Delivers from the head while the head's store has answered. */
  private drain(): void {
    for (let head = this.queue[0]; head?.outcome; head = this.queue[0]) {
      this.queue.shift();
      const { outcome } = head;
      if ('error' in outcome) head.reject(outcome.error);
      else if ('direct' in outcome) head.resolve({ delivered: this.router.publishNow(head.event) });
      else head.resolve(this.router.deliverStored(head.event, outcome.stored));
    }
  }
}
