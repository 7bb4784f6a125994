import type { BusConnection } from './bus-connection.js';
import type { BusRouter } from './bus-router.js';
import { EventFrame, eventJson } from './event-frame.js';
import type { ActionOutcome } from './frame-dispatcher.js';
import { PublishOrder, type Kept } from './history/publish-order.js';
import type { BusEvent, ClientFrame } from './protocol.js';

/** What a publish did: local deliveries, the event's offset when retained, whether its msgId was a repeat. */
export type Published = {
  delivered: number;
  offset?: string;
  duplicate?: true;
};

/**
 * Retained topics and msgId deduplication (src/bus/history), as the bus
 * sees them: a port it calls, which never calls the bus back.
 */
export interface HistoryPort {
  /** Stores the event (retained topic) and/or claims its msgId. Rejects with UNAVAILABLE. */
  keep(event: BusEvent, json: string): Kept;
  /** A subscribe with `since` or `last`: replay, then live. */
  resume(connection: BusConnection, pattern: string, frame: ClientFrame): Promise<ActionOutcome>;
}

type PublishObserver = (event: BusEvent, delivered: number) => void;

const DUPLICATE: Published = Object.freeze({ delivered: 0, duplicate: true });

/**
 * The first stage of a publish: serializes the event once, has the history
 * keep it (a retained topic, a msgId), waits for its turn in its
 * publisher's order, then hands it to the router, which never calls back.
 * An event no rule retains, without msgId, goes to the router at once;
 * another is delivered once Redis has it, in the order of publishing; a
 * repeated msgId is delivered to no one.
 */
export class BusPublisher {
  history: HistoryPort | null = null;
  private observer: PublishObserver | null = null;

  constructor(private readonly router: BusRouter) {}

  publishWithReceipt(event: BusEvent, order: PublishOrder | null = null): Published | Promise<Published> {
    const json = eventJson(event);
    const kept: Kept = this.history?.keep(event, json) ?? '';
    // Without an order of its own (HTTP, the gateway's events), a publish waits for nothing but its store.
    return (order ?? new PublishOrder()).inTurn(kept, (offset) => {
      if (offset === null) return DUPLICATE;
      const delivered = this.router.route(event.type, EventFrame.of(json, offset), offset !== '');
      this.observer?.(event, delivered);
      return offset === '' ? { delivered } : { delivered, offset };
    });
  }

  /**
   * The gateway's own events (queue outcomes, heartbeats): published as
   * above, without a receipt. Returns the connections reached at once (0
   * for a stored event: it is delivered once stored; a store that fails
   * is logged by the history).
   */
  publish(event: BusEvent): number {
    const published = this.publishWithReceipt(event);
    if ('then' in published) {
      published.catch(() => undefined);
      return 0;
    }
    return published.delivered;
  }

  /** Follows every publish made here (span export); one at most, none by default. */
  observePublishes(observer: PublishObserver | null): void {
    this.observer = observer;
  }
}
