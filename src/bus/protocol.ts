/** Frame shapes and error codes of the /bus wire protocol, version 3 (versions 1 and 2 stay valid: everything later is added). */
export const PROTOCOL_VERSION = 3;

export type ErrorCode =
  | 'INVALID_JSON'
  | 'UNKNOWN_ACTION'
  | 'INVALID_FRAME'
  | 'INVALID_TOPIC'
  | 'INVALID_QUEUE'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNKNOWN_TASK'
  | 'FORBIDDEN'
  | 'UNAVAILABLE'
  | 'RATE_LIMITED'
  | 'NO_RESPONDERS'
  | 'NOT_RETAINED'
  /** The gateway failed on the frame (a bug, logged): the frame was not processed; the connection stays open. */
  | 'INTERNAL'
  /** QUEUE_MAX_LIVE or QUEUE_MAX_PER_CONNECTION reached: the queue name was not opened. */
  | 'TOO_MANY_QUEUES'
  /** v3: a chunk for a task this connection does not hold. */
  | 'NOT_LEASED'
  /** v3: a chunk for a task enqueued without `opts.stream`. */
  | 'NOT_STREAMED'
  /** v3: a chunk over STREAM_MAX_BYTES, or past STREAM_MAX_CHUNKS of its task. */
  | 'TOO_LARGE';

/** A refused frame: sent to the client as `{error, code, id?}`. */
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

/** WebSocket close codes the gateway uses. */
export const CloseCode = {
  GOING_AWAY: 1001,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  /** The connection's process stopped beating: its tasks were revoked (v2 §3). */
  HEARTBEAT_LAPSED: 4001,
} as const;
