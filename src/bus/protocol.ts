/** Frame shapes of the /bus wire protocol, version 3 (versions 1 and 2 stay valid: everything later is added); its error codes are in src/protocol/error-codes.ts. */
import type { ErrorCode } from '../protocol/error-codes.js';

export const PROTOCOL_VERSION = 3;

/**
 * A refused frame or request, with a code of the registry: sent as
 * `{error, code, id?}` on the bus, as `{error, code}` with the code's
 * status over HTTP (the app's error handler).
 */
export class BusError extends Error {
  constructor(readonly code: ErrorCode, message: string) {
    super(message);
    this.name = 'BusError';
  }
}

/** A client frame after JSON parsing: an object with a string `action`. */
export interface ClientFrame {
  action: string;
  id?: string | number;
  [field: string]: unknown;
}

/** The normalized event every subscriber receives inside `{"event": …}`. */
export interface BusEvent {
  type: string;
  source: string;
  payload: unknown;
  timestamp: string;
  correlationId?: string | number;
  replyTo?: string;
  /** W3C trace context, kept as the publisher sent it. */
  traceparent?: string;
  /** The publishing token's name, set by the gateway when tokens are on (never by the client). */
  token?: string;
  /** The publisher's id for this message: a repeat on the same topic within 2 minutes is dropped. */
  msgId?: string;
}

/** What a published message may carry before normalization. */
export interface PublishedMessage {
  type?: unknown;
  source?: unknown;
  payload?: unknown;
  timestamp?: unknown;
  correlationId?: unknown;
  replyTo?: unknown;
  traceparent?: unknown;
  msgId?: unknown;
}
