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
