/** The byte stream under a WebSocket, when the bus may batch writes to it. */
export interface CorkableStream {
  cork(): void;
  uncork(): void;
  /** How many corks are pending (Node's Writable): a held stream is not held again. */
  readonly writableCorked: number;
}

/**
 * Corks a socket at its first frame in a tick and uncorks every corked
 * socket when the tick ends, so the frames one tick produces for a
 * connection (events, receipts, tasks) leave in one write. The write
 * syscall, not JavaScript, was the top cost in the profiles of S1 and Q1.
 * Nothing waits: the flush runs before the event loop moves on.
 */
export class TickWriteBatch {
  private readonly corked: CorkableStream[] = [];
  private readonly uncorkAll = (): void => {
    for (const stream of this.corked) stream.uncork();
    this.corked.length = 0;
  };

  /** Corks `stream` until the end of this tick, unless it is corked already. */
  hold(stream: CorkableStream): void {
    if (stream.writableCorked > 0) return;
    stream.cork();
    if (this.corked.push(stream) === 1) process.nextTick(this.uncorkAll);
  }
}
