import { BusError } from '../bus/protocol.js';
import { failAttempt } from './attempt-failure.js';
import { isLostLease, type TaskJob } from './bullmq-adapter.js';
import type { TaskConsumer } from './credit-ledger.js';
import type { Lease, LeaseTable } from './lease-table.js';
import type { LiveQueue } from './live-queue.js';
import type { QueueLogger } from './queue-logger.js';
import { revokeFrame, type RevokeReason } from './queue-types.js';
import { unavailable } from './store-guard.js';
import type { TaskOutcome } from './task-outcome.js';
import type { WorkInFlight } from './work-in-flight.js';

export interface SettlementOptions {
  holders: LeaseTable<TaskJob>;
  /** The live queue of a lease's queue. */
  queueOf(name: string): LiveQueue;
  work: WorkInFlight;
  log: QueueLogger;
  /** Ends a connection's credits in every queue and gives back every task it holds. */
  endConsumer(consumerId: string): void;
  onOutcome(outcome: TaskOutcome): void;
}

/**
 * How a held task ends: `ack` (completed), `fail` (a failed attempt), or
 * its connection going away (every task it held back at once). A command
 * whose reply a Redis restart lost is judged by the task's state after.
 */
export class Settlement {
  constructor(private readonly options: SettlementOptions) {}

  async ack(consumer: TaskConsumer, taskId: string, result: unknown): Promise<void> {
    const { lease, queue } = this.takeLease(consumer, taskId);
    await this.settle(lease, async () => {
      await queue.complete(lease, result ?? null);
      this.options.onOutcome({
        kind: 'completed', queue: lease.queue, taskId, attempts: lease.job.attemptsStarted,
        result: result ?? null, replyTo: lease.facts.replyTo, traceparent: lease.facts.traceparent, stream: lease.facts.stream,
        source: consumer.label, runMs: Date.now() - lease.deliveredAt,
      });
    });
  }

  async fail(consumer: TaskConsumer, taskId: string, reason: string): Promise<void> {
    const { lease } = this.takeLease(consumer, taskId);
    await this.settle(lease, async () => {
      try {
        await failAttempt(this.options.onOutcome, lease.queue, lease, reason, { source: consumer.label, runMs: Date.now() - lease.deliveredAt });
      } catch (err) {
        // As for ack: a resent command finds the task no longer active when
        // the first one ran; either way it is out of this worker's hands.
        if ((await lease.job.getState().catch(() => 'active')) === 'active') throw err;
      }
    });
  }

  /**
   * A connection went away: its tasks go back to their queues at once, each
   * as a failed attempt (`worker disconnected`).
   */
  giveBackAll(consumerId: string, reason = 'worker disconnected', revoked?: RevokeReason): void {
    for (const lease of this.options.holders.heldBy(consumerId)) {
      this.options.queueOf(lease.queue).drop(lease);
      if (revoked && !lease.consumer.closing) lease.consumer.send(revokeFrame(lease, revoked));
      this.failHeld(lease, reason, { immediate: true });
    }
  }

  /** A lease held past its timeout (revoked already): the attempt fails with reason `timeout`, retried while attempts remain. */
  timedOut(lease: Lease<TaskJob>): void {
    this.failHeld(lease, 'timeout', {});
  }

  /** Fails the attempt of a lease that ended without its holder, tracked; a lock lost meanwhile means the task already went back. */
  private failHeld(lease: Lease<TaskJob>, reason: string, how: { immediate?: true }): void {
    const { work, log } = this.options;
    const fail = () => failAttempt(this.options.onOutcome, lease.queue, lease, reason, how);
    work.track(work.withToken(lease.token, fail).catch((err: unknown) => {
      if (isLostLease(err)) return;
      log.error({ err, queue: lease.queue, taskId: lease.taskId, reason }, 'queues: could not fail an ended lease\'s attempt; the task returns when its lease expires');
    }));
  }

  private takeLease(consumer: TaskConsumer, taskId: string): { lease: Lease<TaskJob>; queue: LiveQueue } {
    const lease = this.options.holders.find(consumer.id, taskId);
    if (!lease) throw new BusError('UNKNOWN_TASK', `task ${taskId} is not held by this connection`);
    const queue = this.options.queueOf(lease.queue);
    queue.drop(lease);
    return { lease, queue };
  }

  /** Runs an ack or fail; a lost lease is UNKNOWN_TASK, a Redis error UNAVAILABLE (the lease stays). */
  private async settle(lease: Lease<TaskJob>, action: () => Promise<void>): Promise<void> {
    const { work, log } = this.options;
    const run = work.withToken(lease.token, action);
    work.track(run.catch(() => undefined));
    try {
      await run;
    } catch (err) {
      if (isLostLease(err)) {
        throw new BusError('UNKNOWN_TASK', `the lease on task ${lease.taskId} expired and it went back to its queue`);
      }
      // A result JSON cannot hold (nested too deeply): the worker's fault; nothing changed, the lease stays.
      if (err instanceof RangeError) {
        this.options.queueOf(lease.queue).hold(lease);
        throw new BusError('INVALID_FRAME', `the result cannot be stored as JSON: ${err.message}`);
      }
      log.error({ err, queue: lease.queue, taskId: lease.taskId }, 'queues: ack/fail failed');
      if (lease.consumer.closing || work.closing) this.options.endConsumer(lease.consumer.id);
      else this.options.queueOf(lease.queue).hold(lease);
      throw unavailable();
    }
  }
}
