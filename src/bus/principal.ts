/** What a connection or HTTP caller may do; the edge fills it from its token. */
export type Right = 'publish' | 'subscribe' | 'queue';

export interface Principal {
  /** The token's name, or null when auth is off. */
  readonly name: string | null;
  /** Admin may mutate over REST (retry, remove, pause) and see everything. */
  readonly admin: boolean;
  may(right: Right, subject: string): boolean;
}

/** Auth off: everything is allowed, as on the user's original broker. */
export const OPEN_PRINCIPAL: Principal = Object.freeze({
  name: null,
  admin: true,
  may: () => true,
});

/**
 * Roots of the topics the gateway itself publishes on (`queue.*`,
 * `heartbeat.*`, `service.*`): a subscriber must be able to trust them, so
 * only the gateway or an admin token may publish there.
 */
const GATEWAY_TOPIC_ROOTS: ReadonlySet<string> = new Set(['queue', 'heartbeat', 'service']);

export function isGatewayTopic(topic: string): boolean {
  const dot = topic.indexOf('.');
  return GATEWAY_TOPIC_ROOTS.has(dot < 0 ? topic : topic.slice(0, dot));
}

/** Why a publish on `topic` was refused (the bus's and the HTTP route's FORBIDDEN). */
export function publishRefusal(topic: string): string {
  return isGatewayTopic(topic)
    ? `not allowed to publish ${topic}: only the gateway or an admin token publishes on ${topic.split('.', 1)[0]}.*`
    : `not allowed to publish ${topic}`;
}
