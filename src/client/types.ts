/** Shapes shared by the client's modules (no Node imports: browsers load them too). */

/** A task as the gateway delivers it inside `{"task": …}`. */
export interface Task<Payload = unknown> {
  id: string;
  queue: string;
  payload: Payload;
  createdAt: string | number;
  /** Deliveries of this task, this one included. */
  attempts: number;
  /** W3C trace context it was enqueued with: what its handler sends continues that trace. */
  traceparent?: string;
  /** Aborts when the gateway revokes the task (`reason`: `cancelled`, `timeout`, `heartbeat lapsed`): stop working on it. */
  readonly signal?: AbortSignal;
  /** Reports how far the task got (`queue.progress`, and `REPLYTO.progress` to the enqueuer); rejects with UNKNOWN_TASK once revoked. */
  progress?(value: unknown): Promise<void>;
  /** v3: enqueued with `{stream: true}`: `write` streams its output to followers. */
  stream?: true;
  /** Writes one chunk (JSON data, or a Uint8Array/Buffer as binary); resolves with its seq once stored, later while a follower lags (backpressure). */
  write?(data: unknown): Promise<number>;
}

export type TaskHandler = (task: Task) => unknown;

/**
 * A refusal: the gateway's `{error, code}`, or the client's own
 * (CLOSED, DISCONNECTED, BUFFER_FULL, TIMEOUT, LEASE_LOST, CONNECT_FAILED,
 * UNKNOWN_TASK for progress of a revoked task).
 */
export class BrokerError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'BrokerError';
  }
}
