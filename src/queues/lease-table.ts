import type { TaskConsumer } from './credit-ledger.js';
import type { TaskFacts } from './stored-task.js';

/** A task delivered to a connection and not yet acked or failed. */
export interface Lease<J> {
  consumer: TaskConsumer;
  queue: string;
  taskId: string;
  /** The BullMQ job, held active under `token` while the lease lives. */
  job: J;
  token: string;
  /** Read from the job once, at its fetch: every outcome of the lease says them. */
  facts: TaskFacts;
  deliveredAt: number;
  /** Revokes the attempt when it is held past its timeout; ends with the lease. */
  timer?: NodeJS.Timeout;
}

/**
 * The tasks each connection holds, across queues (each queue keeps its own
 * as well). `ack`/`fail` name a task by id only, so leases are found per
 * connection by task id. A connection can hold two tasks with one id only
 * when they come from two queues (client-chosen jobIds): both are kept.
 */
export class LeaseTable<J> {
  private readonly byConsumer = new Map<string, Map<string, Lease<J>[]>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(lease: Lease<J>): void {
    let tasks = this.byConsumer.get(lease.consumer.id);
    if (!tasks) {
      tasks = new Map();
      this.byConsumer.set(lease.consumer.id, tasks);
    }
    const same = tasks.get(lease.taskId);
    if (same) same.push(lease);
    else tasks.set(lease.taskId, [lease]);
    this.count++;
  }

  /** The consumer's lease on `taskId`, left in place (the oldest, if two queues share the id). */
  find(consumerId: string, taskId: string): Lease<J> | undefined {
    return this.byConsumer.get(consumerId)?.get(taskId)?.[0];
  }

  /** The tasks one consumer holds. */
  heldBy(consumerId: string): Lease<J>[] {
    return [...(this.byConsumer.get(consumerId)?.values() ?? [])].flat();
  }

  /** Returns false if the lease was no longer in the table. */
  remove(lease: Lease<J>): boolean {
    const tasks = this.byConsumer.get(lease.consumer.id);
    const leases = tasks?.get(lease.taskId);
    const index = leases ? leases.indexOf(lease) : -1;
    if (!tasks || !leases || index < 0) return false;
    leases.splice(index, 1);
    if (leases.length === 0) tasks.delete(lease.taskId);
    if (tasks.size === 0) this.byConsumer.delete(lease.consumer.id);
    this.count--;
    return true;
  }

  consumers(): string[] {
    return [...this.byConsumer.keys()];
  }
}
