import type { TaskConsumer } from './credit-ledger.js';

/** A task delivered to a connection and not yet acked or failed. */
export interface Lease<J> {
  consumer: TaskConsumer;
  queue: string;
  taskId: string;
  /** The BullMQ job, held active under `token` while the lease lives. */
  job: J;
  token: string;
  deliveredAt: number;
  /** Revokes the attempt when it is held past its timeout; ends with the lease. */
  timer?: NodeJS.Timeout;
}

/**
 * The tasks each connection holds. `ack`/`fail` name a task by id only, so
 * leases are found per connection by task id; per queue they are listed
 * for lock renewal. A connection can hold two tasks with one id only when
 * they come from two queues (client-chosen jobIds): both are kept.
 */
export class LeaseTable<J> {
  private readonly byConsumer = new Map<string, Map<string, Lease<J>[]>>();
  private readonly byQueue = new Map<string, Set<Lease<J>>>();
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
    let queued = this.byQueue.get(lease.queue);
    if (!queued) {
      queued = new Set();
      this.byQueue.set(lease.queue, queued);
    }
    queued.add(lease);
    this.count++;
  }

  /** Removes and returns the consumer's lease on `taskId` (the oldest, if two queues share the id). */
  take(consumerId: string, taskId: string): Lease<J> | undefined {
    const leases = this.byConsumer.get(consumerId)?.get(taskId);
    const lease = leases?.[0];
    if (lease) this.remove(lease);
    return lease;
  }

  /** The tasks one consumer holds, without taking them. */
  heldBy(consumerId: string): { queue: string; taskId: string }[] {
    return [...(this.byConsumer.get(consumerId)?.values() ?? [])].flat().map(({ queue, taskId }) => ({ queue, taskId }));
  }

  /** Removes and returns every lease of a consumer. */
  takeAll(consumerId: string): Lease<J>[] {
    const tasks = this.byConsumer.get(consumerId);
    if (!tasks) return [];
    const leases = [...tasks.values()].flat();
    for (const lease of leases) this.remove(lease);
    return leases;
  }

  /** Returns false if the lease was no longer in the table. */
  remove(lease: Lease<J>): boolean {
    const tasks = this.byConsumer.get(lease.consumer.id);
    const leases = tasks?.get(lease.taskId);
    const index = leases ? leases.indexOf(lease) : -1;
    if (!tasks || !leases || index < 0) return false;
    clearTimeout(lease.timer);
    leases.splice(index, 1);
    if (leases.length === 0) tasks.delete(lease.taskId);
    if (tasks.size === 0) this.byConsumer.delete(lease.consumer.id);
    const queued = this.byQueue.get(lease.queue);
    queued?.delete(lease);
    if (queued?.size === 0) this.byQueue.delete(lease.queue);
    this.count--;
    return true;
  }

  /** The consumer's lease on `taskId`, left in place. */
  find(consumerId: string, taskId: string): Lease<J> | undefined {
    return this.byConsumer.get(consumerId)?.get(taskId)?.[0];
  }

  /** Who holds `taskId` of `queue` here, if anyone. */
  holderOf(queue: string, taskId: string): Lease<J> | undefined {
    for (const lease of this.byQueue.get(queue) ?? []) if (lease.taskId === taskId) return lease;
    return undefined;
  }

  has(lease: Lease<J>): boolean {
    return this.byQueue.get(lease.queue)?.has(lease) ?? false;
  }

  inQueue(queue: string): Lease<J>[] {
    return [...(this.byQueue.get(queue) ?? [])];
  }

  queues(): string[] {
    return [...this.byQueue.keys()];
  }

  consumers(): string[] {
    return [...this.byConsumer.keys()];
  }

  /** Leases one consumer holds on one queue. */
  countOf(queue: string, consumerId: string): number {
    let n = 0;
    for (const lease of this.byQueue.get(queue) ?? []) if (lease.consumer.id === consumerId) n++;
    return n;
  }
}
