/** The byte stream under a WebSocket, when the bus may batch writes to it. */
export interface CorkableStream {
  cork(): void;
  uncork(): void;
}

/**
 * Corks a socket at its first frame in a tick and uncorks every corked
 * socket when the tick ends, so the frames one tick produces for a
 * connection (events, receipts, tasks) leave in one write. The write
 * syscall, not JavaScript, was the top cost in the profiles of S1 and Q1.
 * Nothing waits: the flush runs before the event loop moves on.
 */
export class TickWriteBatch {
  /** Counts flushes: a writer holds its stream once per value. */
  tick = 0;
  private readonly corked: CorkableStream[] = [];
  private readonly uncorkAll = (): void => {
    this.tick++;
    for (const stream of this.corked) stream.uncork();
    this.corked.length = 0;
  };

  /** Corks `stream` until the end of this tick; call once per stream per `tick`. */
  hold(stream: CorkableStream): void {
    stream.cork();
    if (this.corked.push(stream) === 1) process.nextTick(this.uncorkAll);
  }
}
