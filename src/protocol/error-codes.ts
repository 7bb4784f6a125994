/**
 * Every error code the gateway sends: in bus frames (`{error, code, id?}`),
 * on the WebSocket /heartbeat and in HTTP bodies (`{error, code}`). Each
 * has its meaning, the HTTP status it is answered with, and the WebSocket
 * close code of the case where the bus closes the connection instead of
 * answering a frame. The app's one error handler takes the status from
 * here; docs/bus-protocol.md lists the same table (a test holds them
 * together, and holds both clients to these codes and their own).
 * No Node imports: the clients share this file.
 */
import { CloseCode } from './close-codes.js';

export interface ErrorCodeEntry {
  meaning: string;
  /** The status of an HTTP answer with this code. */
  http: number;
  close?: number;
  /** Headers the HTTP answer always carries with this status. */
  headers?: Readonly<Record<string, string>>;
}

const entries = {
  INVALID_JSON: { http: 400, meaning: 'The frame or the body is not JSON. On the bus the message is exactly `invalid json`.' },
  UNKNOWN_ACTION: { http: 400, meaning: 'No such `action` (bus only). The message is exactly `unknown action`.' },
  INVALID_FRAME: {
    http: 400,
    meaning: 'Not an object, a missing or mistyped field, a value out of range, JSON nested deeper than 256 levels, a binary bus frame; over HTTP also a body or query the route refuses, or two tokens on one request.',
  },
  INVALID_TOPIC: { http: 400, meaning: 'A topic, pattern, `message.type` or `replyTo` that breaks the topic rule or the name rule.' },
  INVALID_QUEUE: { http: 400, meaning: 'A queue name that breaks the name rule.' },
  PAYLOAD_TOO_LARGE: {
    http: 413,
    close: CloseCode.MESSAGE_TOO_BIG,
    meaning: 'A body over the frame limit (`BUS_MAX_FRAME_BYTES`). A bus frame over it closes the connection with 1009.',
  },
  UNKNOWN_TASK: {
    http: 404,
    meaning: 'No such task, or not held by this connection (its lease expired, it was revoked); on the bus also a `cancel` of a task in a state that does not allow it.',
  },
  FORBIDDEN: { http: 403, meaning: 'The token lacks the right (publish, subscribe, queue, admin), or the request comes from a foreign `Origin` (with no tokens, a foreign `Host`).' },
  UNAUTHORIZED: { http: 401, headers: { 'www-authenticate': 'Bearer' }, meaning: 'Tokens are configured and the request has none, or an unknown one (HTTP only).' },
  UNAVAILABLE: {
    http: 503,
    meaning: 'A store behind the action is down or refused the command (Redis for queues and history, the heartbeat store), or the gateway is shutting down: nothing was stored.',
  },
  RATE_LIMITED: {
    http: 429,
    close: CloseCode.POLICY_VIOLATION,
    meaning: 'Too many frames a second (a connection that goes on is closed with 1008 `rate limited`), patterns past `BUS_MAX_SUBSCRIPTIONS` or `BUS_MAX_PATTERN_BYTES`, HTTP requests past `HTTP_RATE_LIMIT_PER_MINUTE`, WebSockets past `BUS_MAX_CONNECTIONS_PER_CLIENT`.',
  },
  NO_RESPONDERS: {
    http: 400,
    meaning: 'A `publish` with `replyTo` and an `id` that no subscription on any gateway of the cluster matches: delivered to no one (bus only; a publish without `id` or `replyTo` to nobody is no error).',
  },
  NOT_RETAINED: { http: 400, meaning: '`since` or `last` on a pattern that no retention rule covers.' },
  INTERNAL: { http: 500, meaning: 'The gateway failed on the frame or request (a bug, logged): it was not processed; the connection stays open.' },
  TOO_MANY_QUEUES: { http: 429, meaning: '`QUEUE_MAX_LIVE` or `QUEUE_MAX_PER_CONNECTION` reached: the queue name was not opened.' },
  NOT_LEASED: { http: 409, meaning: '(v3) A chunk for a task this connection does not hold, or whose stream has ended.' },
  NOT_STREAMED: { http: 400, meaning: '(v3) A chunk for a task enqueued without `opts.stream`.' },
  TOO_LARGE: { http: 413, meaning: '(v3) A chunk over `STREAM_MAX_BYTES`, or past `STREAM_MAX_CHUNKS` chunks of its task.' },
  TASK_ACTIVE: { http: 409, meaning: 'An admin action on a task that is being worked on (held by a worker, another gateway or a raw BullMQ worker).' },
  TASK_STATE: { http: 409, meaning: 'An admin action on a task whose state does not allow it (retry of a waiting task, cancel of a finished one).' },
  INSTANCE_LIMIT: { http: 409, meaning: 'A beat of one more instance of a name than the ecosystem file allows.' },
  UPGRADE_REQUIRED: { http: 426, headers: { upgrade: 'websocket' }, meaning: '`GET /heartbeat` without a WebSocket upgrade.' },
  NOT_FOUND: { http: 404, meaning: 'No such route (the message quotes the URL, any token masked).' },
  SERVICE_DOWN: { http: 503, meaning: 'A proxy route names a service with no live instance (with `Retry-After`); the upstream was not contacted.' },
  BAD_GATEWAY: { http: 502, meaning: 'The upstream of a proxy route is unreachable or failed.' },
  GATEWAY_TIMEOUT: { http: 504, meaning: 'The upstream of a proxy route did not answer in time.' },
} satisfies Record<string, ErrorCodeEntry>;

export type ErrorCode = keyof typeof entries;

export const ERROR_CODES: Readonly<Record<ErrorCode, ErrorCodeEntry>> = entries;

/** A refusal as it is sent: the bus adds the frame's `id`. */
export interface ErrorReply {
  error: string;
  code: ErrorCode;
}

/**
 * Codes the clients raise themselves and the gateway never sends: a
 * `BrokerError` carries one of these or one of ERROR_CODES.
 */
export const CLIENT_ERROR_CODES = {
  ERROR: 'An error frame without a code (the gateway always sends one).',
  CONNECT_FAILED: 'The first connection could not be opened.',
  DISCONNECTED: 'The connection closed before the gateway confirmed the frame: it may or may not have taken effect.',
  TIMEOUT: 'No receipt or reply in time.',
  CLOSED: 'The client was closed: the call was not carried out, or may not have been.',
  BUFFER_FULL: 'Not connected, and the frames waiting to be sent fill the buffer.',
  LEASE_LOST: '`ack` or `fail` of a task whose connection closed or that was revoked: not sent, the gateway already gave it back.',
  INVALID_URL: 'The gateway URL is not ws://, wss://, http:// or https:// (TypeScript client).',
} as const satisfies Record<string, string>;
