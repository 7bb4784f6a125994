import type { QueueContext } from './queue-context.js';

/**
 * Keeps the BullMQ locks of leased tasks alive while their connections
 * live (manual processing renews nothing by itself): every half lease, one
 * extendLocks per queue; a lock found lost ends its lease (the task went
 * back to its queue and its holder's ack will be UNKNOWN_TASK).
 */
export class LeaseRenewal {
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly ctx: QueueContext) {
    this.timer = setInterval(() => this.renew(), Math.max(100, Math.floor(ctx.options.leaseMs / 2)));
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private renew(): void {
    const { leases, log } = this.ctx;
    for (const name of leases.queues()) {
      const runtime = this.ctx.runtimes.get(name);
      const worker = runtime?.fetcher;
      if (!runtime || !worker || runtime.renewing) continue;
      const held = leases.inQueue(name);
      runtime.renewing = true;
      // A timer serving every queue: one queue's failure, even a synchronous one, is logged and the others renew.
      Promise.resolve().then(() => worker.extendJobLocks(held.map((l) => l.taskId), held.map((l) => l.token), this.ctx.options.leaseMs))
        .then((lostIds) => {
          const lost = new Set(lostIds);
          for (const lease of held) {
            if (!lost.has(lease.taskId) || !leases.remove(lease)) continue;
            log.warn({ queue: name, taskId: lease.taskId, clientId: lease.consumer.id }, 'queues: lease lost; the task went back to its queue');
          }
        }, (err: unknown) => {
          log.warn({ err, queue: name }, 'queues: renewing leases failed');
        })
        .finally(() => {
          runtime.renewing = false;
        });
    }
  }
}
