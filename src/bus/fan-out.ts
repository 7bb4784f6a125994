import type { BusConnection } from './bus-connection.js';
import type { EventFrame } from './event-frame.js';

/**
 * The last stage of a publish: the event to every connection the router
 * found for it, the same frame for all. Counts what it sent and the slow
 * consumers it dropped on the way.
 */
export class FanOut {
  delivered = 0;
  slowConsumersDropped = 0;

  constructor(private readonly log?: { error(obj: object, msg?: string): void }) {}

  /** Returns the number of connections it was sent to. */
  toConnections(connections: ReadonlySet<BusConnection>, topic: string, frame: EventFrame): number {
    let delivered = 0;
    for (const connection of connections) {
      // One subscriber's failure stays its own: the others still get the event.
      try {
        const delivery = connection.deliverEvent(topic, frame);
        if (delivery === 'sent') delivered++;
        else if (delivery === 'dropped') this.slowConsumersDropped++;
      } catch (err) {
        this.log?.error({ err, clientId: connection.id, type: topic }, 'bus: delivering an event to one subscriber failed');
      }
    }
    this.delivered += delivered;
    return delivered;
  }

  /** An event message for one connection (a replayed one): whether it was sent. */
  toConnection(connection: BusConnection, message: Buffer): boolean {
    const delivery = connection.deliverMessage(message);
    if (delivery === 'dropped') this.slowConsumersDropped++;
    return delivery === 'sent';
  }
}
