import type { BusPublisher } from './bus-publisher.js';
import type { BusRouter } from './bus-router.js';
import { ANSWERED, type BusLogger, type FrameDispatcher } from './frame-dispatcher.js';
import { PublishOrder } from './history/publish-order.js';
import { normalizeMessage } from './normalize.js';
import { publishRefusal } from './principal.js';
import { BusError, type ClientFrame } from './protocol.js';
import { topicProblem } from './topic.js';
import { quoted } from '../protocol/names.js';
import { traceIdOf } from '../trace/trace-context.js';

function patternOf(frame: ClientFrame): string {
  if (typeof frame.topic !== 'string') throw new BusError('INVALID_FRAME', 'topic must be a string');
  const problem = topicProblem(frame.topic, true);
  if (problem !== null) throw new BusError('INVALID_TOPIC', `invalid topic: topic ${problem}: ${quoted(frame.topic)}`);
  return frame.topic;
}

/** The pub/sub actions of the protocol: subscribe, unsubscribe, publish, ping. */
export function registerPubSubActions(dispatcher: FrameDispatcher, router: BusRouter, publisher: BusPublisher, log: BusLogger): void {
  const debug = log.isLevelEnabled?.('debug') ?? false;

  dispatcher.register('subscribe', (connection, frame) => {
    const pattern = patternOf(frame);
    if (!connection.principal.may('subscribe', pattern)) {
      throw new BusError('FORBIDDEN', `not allowed to subscribe to ${pattern}`);
    }
    if (frame.since !== undefined || frame.last !== undefined) {
      if (!publisher.history) throw new BusError('NOT_RETAINED', `${pattern} is not retained`);
      return publisher.history.resume(connection, pattern, frame);
    }
    router.subscribe(connection, pattern);
    if (debug) log.debug({ clientId: connection.id, name: connection.name, pattern }, 'subscribe');
    // In a cluster the receipt waits until the other instances know the pattern.
    return router.interestPropagated();
  });

  dispatcher.register('unsubscribe', (connection, frame) => {
    const pattern = patternOf(frame);
    router.unsubscribe(connection, pattern);
    if (debug) log.debug({ clientId: connection.id, name: connection.name, pattern }, 'unsubscribe');
  });

  dispatcher.register('publish', (connection, frame) => {
    const event = normalizeMessage(frame.message, connection.label, connection.principal.name);
    if (!connection.principal.may('publish', event.type)) {
      throw new BusError('FORBIDDEN', publishRefusal(event.type));
    }
    // A request whose sender waits for the receipt learns at once that nobody serves it.
    if (event.replyTo !== undefined && frame.id !== undefined && !router.hasSubscriber(event.type)) {
      throw new BusError('NO_RESPONDERS', `no subscriber for ${event.type}: nobody can answer this request`);
    }
    // Stored first (retained, or with msgId): delivered once Redis has it, and
    // this connection's later publishes wait behind it, so its order holds.
    // The receipt: `delivered`, plus `offset` (retained) or `duplicate` (a repeated msgId).
    const published = publisher.publishWithReceipt(event, connection.publishes ??= new PublishOrder());
    if (debug) {
      const traceId = event.traceparent === undefined ? undefined : traceIdOf(event.traceparent);
      const delivered = 'then' in published ? undefined : published.delivered;
      log.debug({ clientId: connection.id, type: event.type, delivered, traceId }, 'publish');
    }
    return published;
  });

  dispatcher.register('ping', (connection, frame) => {
    connection.send(frame.id === undefined ? { pong: Date.now() } : { pong: Date.now(), id: frame.id });
    return ANSWERED;
  });
}
