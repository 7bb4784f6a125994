/** Shapes shared by the client's modules (no Node imports: browsers load them too). */

/** A task as the gateway delivers it inside `{"task": …}`. */
export interface Task<Payload = unknown> {
  id: string;
  queue: string;
  payload: Payload;
  createdAt: string | number;
  /** Deliveries of this task, this one included. */
  attempts: number;
}

export type TaskHandler = (task: Task) => unknown;

/**
 * A refusal: the gateway's `{error, code}`, or the client's own
 * (CLOSED, DISCONNECTED, BUFFER_FULL, TIMEOUT, LEASE_LOST, CONNECT_FAILED).
 */
export class BrokerError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'BrokerError';
  }
}
