import { PULL_RETRY_CODES, pullRetryDelayMs } from './defaults.js';
import { runInTrace } from './trace.js';
import { BrokerError, type Task, type TaskHandler } from './types.js';

/** What a worker needs from its client (kept narrow so the client's state stays private). */
export interface WorkerPort {
  pull(worker: TaskWorker): void;
  settle(action: 'ack' | 'fail', task: Task, fields: Record<string, unknown>): Promise<void>;
  /** Forget the worker's open pulls: tasks that still arrive on them are handed back. */
  release(worker: TaskWorker): void;
  report(err: unknown): void;
  schedule(fn: () => void, ms: number): () => void;
}

/** The task is no longer ours (the connection closed): the gateway delivers it again. Nothing to report. */
const LEASE_GONE = new Set(['LEASE_LOST', 'DISCONNECTED', 'CLOSED', 'UNKNOWN_TASK']);
/** The ack's result could not be sent: ack without it rather than leave the task hanging. */
const RESULT_REFUSED = new Set(['INVALID_FRAME', 'PAYLOAD_TOO_LARGE']);

/**
 * One `work(queue, handler, {concurrency})`: holds `concurrency` credits,
 * each either an open pull or a task in hand, so it never holds more.
 */
export class TaskWorker {
  /** Tasks whose handler is running or whose ack/fail awaits its receipt. */
  inHand = 0;
  acked = 0;
  failed = 0;
  /** Resolves once stopped and every task in hand is settled. */
  readonly stopped: Promise<void>;
  private halted = false;
  private resolveStopped: () => void = () => {};
  private readonly retries = new Set<() => void>();
  /** Pulls refused since one last brought a task: the retry delay doubles with each. */
  private refusedInRow = 0;

  constructor(
    private readonly port: WorkerPort,
    readonly queue: string,
    private readonly handler: TaskHandler,
    readonly concurrency: number,
  ) {
    this.stopped = new Promise((resolve) => {
      this.resolveStopped = resolve;
    });
  }

  get running(): boolean {
    return !this.halted;
  }

  start(): void {
    for (let i = 0; i < this.concurrency; i++) this.port.pull(this);
  }

  /** Stops pulling and waits for the tasks in hand to be acked or failed. */
  async stop(): Promise<void> {
    this.halt();
    await this.stopped;
  }

  /** Stops pulling now; `stopped` resolves when the tasks in hand are done. */
  halt(): void {
    if (this.halted) return;
    this.halted = true;
    for (const cancel of this.retries) cancel();
    this.retries.clear();
    this.port.release(this);
    if (this.inHand === 0) this.resolveStopped();
  }

  run(task: Task): void {
    this.refusedInRow = 0;
    this.inHand++;
    void this.process(task);
  }

  pullRefused(err: BrokerError): void {
    this.port.report(new BrokerError(err.code, `pull from ${this.queue} refused: ${err.message}`));
    if (this.halted || !PULL_RETRY_CODES.has(err.code)) return;
    const delayMs = pullRetryDelayMs(this.refusedInRow++);
    const cancel = this.port.schedule(() => {
      this.retries.delete(cancel);
      if (!this.halted) this.port.pull(this);
    }, delayMs);
    this.retries.add(cancel);
  }

  private async process(task: Task): Promise<void> {
    let succeeded = true;
    let result: unknown;
    let reason = '';
    try {
      result = await runInTrace(task.traceparent, () => this.handler(task));
    } catch (err) {
      succeeded = false;
      reason = err instanceof Error ? err.message : String(err);
    }
    try {
      if (succeeded) {
        await this.ack(task, result);
        this.acked++;
      } else {
        await this.port.settle('fail', task, { reason });
        this.failed++;
      }
    } catch (err) {
      if (!(err instanceof BrokerError && LEASE_GONE.has(err.code))) this.port.report(err);
    }
    this.inHand--;
    if (!this.halted) this.port.pull(this);
    else if (this.inHand === 0) this.resolveStopped();
  }

  private async ack(task: Task, result: unknown): Promise<void> {
    if (result === undefined) return this.port.settle('ack', task, {});
    try {
      await this.port.settle('ack', task, { result });
    } catch (err) {
      if (!(err instanceof BrokerError && RESULT_REFUSED.has(err.code))) throw err;
      this.port.report(new BrokerError(err.code, `result of task ${task.id} not sent: ${err.message}`));
      await this.port.settle('ack', task, {});
    }
  }
}
