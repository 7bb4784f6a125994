import { isValidQueueName } from '../bus/topic.js';
import { ProgressListeners, type ProgressCallback } from './progress.js';
import { invoke, type PubSub } from './pubsub.js';
import { TaskWorker, type WorkerPort } from './task-worker.js';
import { outgoingTraceparent, runInTrace } from './trace.js';
import { isObject, quiet, rejected, type FrameId, type Transport } from './transport.js';
import { BrokerError, type Task, type TaskHandler } from './types.js';

export interface EnqueueOptions {
  priority?: number;
  delay?: number;
  attempts?: number;
  backoff?: number | { type: 'exponential' | 'fixed'; delay: number };
  /** The taskId to use instead of one the gateway picks. */
  jobId?: string;
  /** When the task is done the gateway publishes its result there (correlationId = taskId). */
  replyTo?: string;
  /** With `replyTo`: called with each progress the worker reports (events `REPLYTO.progress` of this task). */
  onProgress?: ProgressCallback;
  /** v3: the worker may stream output (`task.write`) for `follow()` to read. */
  stream?: boolean;
  /** W3C trace context of the task; default (with the client's `traceTasks`): a child of what is being handled, else a new trace. */
  traceparent?: string;
}

/**
 * One delivery of a task: the connection it came on, what aborts its
 * handler, and why the gateway revoked it. Kept per delivery, not per id: a
 * revoked task may be delivered again while its first handler still runs.
 */
interface Lease {
  epoch: number;
  controller: AbortController;
  revoked?: string;
}

interface OpenPull {
  id: FrameId;
  queue: string;
  /** null: a seed-style pull(), its task goes to onTaskReceived. */
  owner: TaskWorker | null;
}

function noop(): void {}

/**
 * The work layer: enqueue, pulls (restored on every connection), and
 * leases. A task is leased to the connection it came on: once that
 * connection has closed, its ack or fail fails with LEASE_LOST (the gateway
 * has already given it back to the queue).
 */
export class Work {
  private readonly pulls = new Map<FrameId, OpenPull>();
  /** Pulls of stopped workers still open at the gateway: their tasks are handed back. */
  private readonly orphanPulls = new Set<FrameId>();
  /** Tasks in hand, by id (the latest delivery). */
  private readonly leases = new Map<string, Lease>();
  /** Tasks the gateway revoked on this connection, by id: an ack or fail by id is refused, never sent. */
  private readonly revoked = new Map<string, Lease>();
  private readonly leaseOf = new WeakMap<Task, Lease>();
  private readonly progressListeners: ProgressListeners;
  private readonly workers = new Set<TaskWorker>();
  private taskCallback: TaskHandler | null = null;
  private draining = false;

  constructor(
    private readonly transport: Transport,
    pubsub: PubSub,
    private readonly report: (err: unknown) => void,
    private readonly revokedEvent: (revoke: { taskId: string; queue: string; reason: string }) => void,
    /** Send `opts.traceparent` on every enqueue (not only an explicit one). */
    private readonly traceTasks: boolean,
  ) {
    this.progressListeners = new ProgressListeners(pubsub, report);
  }

  enqueue(queue: string, payload: unknown, options?: EnqueueOptions): Promise<string> {
    if (!isValidQueueName(queue)) return rejected(new BrokerError('INVALID_QUEUE', `invalid queue: ${JSON.stringify(queue)}`));
    const { onProgress, ...opts } = options ?? {};
    if (this.traceTasks) opts.traceparent = outgoingTraceparent(opts.traceparent);
    const frame: Record<string, unknown> & { action: string } = { action: 'enqueue', queue, task: payload === undefined ? null : payload };
    if (options !== undefined || this.traceTasks) frame.opts = opts;
    if (!onProgress) return quiet(this.transport.call(frame).then((receipt) => String(receipt.taskId)));
    if (opts.replyTo === undefined) return rejected(new BrokerError('INVALID_FRAME', 'onProgress needs replyTo: progress is published to REPLYTO.progress'));
    const replyTo = opts.replyTo;
    // Subscribed before the task exists, so no progress can pass unseen.
    return quiet(this.progressListeners.prepare(replyTo)
      .then(() => this.transport.call(frame))
      .then((receipt) => {
        const taskId = String(receipt.taskId);
        this.progressListeners.add(replyTo, taskId, onProgress);
        return taskId;
      }));
  }

  /** Reports progress of a task in hand; UNKNOWN_TASK once revoked, LEASE_LOST once its connection closed. */
  progress(taskId: string, value: unknown, lease = this.byId(taskId)): Promise<void> {
    const lost = this.leaseProblem(taskId, lease, 'UNKNOWN_TASK');
    if (lost) return rejected(lost);
    return quiet(this.transport.call({ action: 'progress', taskId, progress: value === undefined ? null : value }).then(noop));
  }

  /** Streams output of a task in hand (v3): JSON data, or bytes as a binary frame; resolves with its seq once stored. */
  write(taskId: string, data: unknown, lease: Lease): Promise<number> {
    const lost = this.leaseProblem(taskId, lease, 'NOT_LEASED');
    if (lost) return rejected(lost);
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data instanceof Uint8Array ? data : null;
    const receipt = bytes
      ? this.transport.callBinary({ action: 'chunk', taskId }, bytes)
      : this.transport.call({ action: 'chunk', taskId, data: data === undefined ? null : data });
    return quiet(receipt.then((answer) => Number(answer.seq)));
  }

  /** The gateway took a task back: abort its handler, forget it, never ack it. */
  revoke(raw: unknown): void {
    if (!isObject(raw) || raw.taskId === undefined || raw.taskId === null) return;
    const taskId = String(raw.taskId);
    const reason = typeof raw.reason === 'string' ? raw.reason : 'revoked';
    const lease = this.leases.get(taskId) ?? { epoch: this.transport.epoch, controller: new AbortController() };
    this.leases.delete(taskId);
    lease.revoked = reason;
    this.revoked.set(taskId, lease);
    lease.controller.abort(reason);
    this.revokedEvent({ taskId, queue: typeof raw.queue === 'string' ? raw.queue : '', reason });
  }

  work(queue: string, handler: TaskHandler, options: { concurrency?: number } = {}): TaskWorker {
    if (!isValidQueueName(queue)) throw new BrokerError('INVALID_QUEUE', `invalid queue: ${JSON.stringify(queue)}`);
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new BrokerError('INVALID_FRAME', `concurrency must be a whole number of at least 1, not ${concurrency}`);
    }
    if (this.transport.isClosed) throw new BrokerError('CLOSED', 'the client is closed');
    const worker = new TaskWorker(this.workerPort, queue, handler, concurrency);
    this.workers.add(worker);
    void worker.stopped.then(() => this.workers.delete(worker));
    worker.start();
    return worker;
  }

  onTaskReceived(callback: TaskHandler): void {
    this.taskCallback = callback;
  }

  pull(queue: string): void {
    if (!isValidQueueName(queue)) throw new BrokerError('INVALID_QUEUE', `invalid queue: ${JSON.stringify(queue)}`);
    if (this.transport.isClosed) throw new BrokerError('CLOSED', 'the client is closed');
    this.openPull(queue, null);
  }

  ack(taskId: string, result?: unknown): Promise<void> {
    return this.settleHeld('ack', taskId, result === undefined ? {} : { result });
  }

  fail(taskId: string, reason = ''): Promise<void> {
    return this.settleHeld('fail', taskId, { reason });
  }

  /** Stops every worker and waits for the tasks in hand; tasks arriving meanwhile are left to the closing connection. */
  async drain(): Promise<void> {
    this.draining = true;
    await Promise.all([...this.workers].map((worker) => worker.stop()));
  }

  /** A new connection: reopen every pull. */
  restore(): void {
    for (const pull of this.pulls.values()) this.sendPull(pull);
  }

  /** The connection closed: pulls of stopped workers ended with it; its leases (revoked or not) are LEASE_LOST by epoch. */
  lost(): void {
    this.orphanPulls.clear();
    this.revoked.clear();
  }

  closing(): void {
    for (const worker of this.workers) worker.halt();
  }

  /** A receipt or error for one of the pulls; true if it was one. */
  answer(id: FrameId, failure: BrokerError | null): boolean {
    const pull = this.pulls.get(id);
    if (pull) {
      if (failure) this.pullRefused(pull, failure);
      return true;
    }
    if (this.orphanPulls.has(id)) {
      if (failure) this.orphanPulls.delete(id);
      return true;
    }
    return false;
  }

  private settleHeld(action: 'ack' | 'fail', taskId: string, fields: Record<string, unknown>): Promise<void> {
    return this.settleTask(action, taskId, this.byId(taskId), fields);
  }

  /** A seed-style call by id: the latest delivery, or the revoked one. */
  private byId(taskId: string): Lease | undefined {
    return this.leases.get(taskId) ?? this.revoked.get(taskId);
  }

  private settleTask(action: 'ack' | 'fail', taskId: string, lease: Lease | undefined, fields: Record<string, unknown>): Promise<void> {
    const lost = this.leaseProblem(taskId, lease, 'LEASE_LOST');
    if (lease && this.leases.get(taskId) === lease) this.leases.delete(taskId);
    if (lost) return rejected(lost);
    return quiet(this.transport.call({ action, taskId, ...fields }).then(noop));
  }

  /** Why the task is no longer ours (revoked, or its connection closed), or null. */
  private leaseProblem(taskId: string, lease: Lease | undefined, revokedCode: string): BrokerError | null {
    if (lease?.revoked !== undefined) return new BrokerError(revokedCode, `task ${taskId} was revoked by the gateway (${lease.revoked})`);
    const epoch = lease?.epoch;
    if (epoch !== undefined && (epoch !== this.transport.epoch || !this.transport.isOpen)) {
      return new BrokerError('LEASE_LOST', `task ${taskId} came on a connection that closed: the gateway gave it back to the queue`);
    }
    return null;
  }

  /** Gives the task its `signal` and `progress` (not enumerable: the task still prints and serializes as delivered). */
  private lease(raw: Record<string, unknown>, epoch: number): Task {
    const taskId = String(raw.id);
    const lease: Lease = { epoch, controller: new AbortController() };
    this.leases.set(taskId, lease);
    this.revoked.delete(taskId);
    const task = { ...raw, id: taskId } as unknown as Task;
    Object.defineProperties(task, {
      signal: { value: lease.controller.signal },
      progress: { value: (value: unknown) => this.progress(taskId, value, lease) },
      write: { value: (data: unknown) => this.write(taskId, data, lease) },
    });
    this.leaseOf.set(task, lease);
    return task;
  }

  private openPull(queue: string, owner: TaskWorker | null): void {
    const pull: OpenPull = { id: this.transport.frameId(), queue, owner };
    this.pulls.set(pull.id, pull);
    this.sendPull(pull);
  }

  private sendPull(pull: OpenPull): void {
    this.transport.sendNow({ action: 'pull', queue: pull.queue, id: pull.id });
  }

  private pullRefused(pull: OpenPull, err: BrokerError): void {
    this.pulls.delete(pull.id);
    if (pull.owner) pull.owner.pullRefused(err);
    else this.report(new BrokerError(err.code, `pull from ${pull.queue} refused: ${err.message}`));
  }

  receive(raw: unknown, pullId: unknown): void {
    if (!isObject(raw) || raw.id === undefined || raw.id === null) return;
    const task = this.lease(raw, this.transport.epoch);
    const lease = this.leaseOf.get(task);
    if (typeof pullId === 'number' && this.orphanPulls.delete(pullId)) {
      // Draining: closing the connection hands it back without a retry delay.
      if (!this.draining) void this.settleTask('fail', task.id, lease, { reason: 'worker stopped' });
      return;
    }
    let pull = typeof pullId === 'number' ? this.pulls.get(pullId) : undefined;
    if (!pull) {
      for (const candidate of this.pulls.values()) {
        if (candidate.queue === task.queue) {
          pull = candidate;
          break;
        }
      }
    }
    if (pull) this.pulls.delete(pull.id);
    if (pull?.owner) {
      pull.owner.run(task);
      return;
    }
    if (this.taskCallback) {
      const callback = this.taskCallback;
      runInTrace(task.traceparent, () => invoke(callback, task, this.report));
      return;
    }
    this.report(new BrokerError('UNKNOWN_TASK', `task ${task.id} of ${task.queue} arrived with no handler: handed back`));
    void this.settleTask('fail', task.id, lease, { reason: 'no handler for this task' });
  }

  private readonly workerPort: WorkerPort = {
    pull: (worker) => this.openPull(worker.queue, worker),
    settle: (action, task, fields) => this.settleTask(action, task.id, this.leaseOf.get(task), fields),
    release: (worker) => {
      for (const pull of [...this.pulls.values()]) {
        if (pull.owner !== worker) continue;
        this.pulls.delete(pull.id);
        if (this.transport.isOpen) this.orphanPulls.add(pull.id);
      }
    },
    report: (err) => this.report(err),
    schedule: (fn, ms) => {
      const timer = setTimeout(fn, ms);
      (timer as { unref?: () => void }).unref?.();
      return () => clearTimeout(timer);
    },
  };
}
