import { activeLocks, type TaskJob } from './bullmq-adapter.js';
import type { Delivery } from './delivery.js';
import type { QueueContext } from './queue-context.js';

/** After Redis comes back, resent commands settle before orphans are looked for. */
const RECLAIM_DELAY_MS = 1000;

/**
 * Tasks that went astray while the gateway or Redis was away:
 * - left active by an earlier run: the stalled check of their queue is
 *   started at once, so they return when their locks expire even if no one
 *   pulls that queue yet;
 * - fetched as Redis went down: ioredis resends a fetch whose reply was
 *   lost and it brings another task; the first stays locked with this
 *   gateway's token, held by no one. Such orphans go back at once, not
 *   after their lease.
 */
export class Recovery {
  private reclaimTimer: NodeJS.Timeout | undefined;

  constructor(private readonly ctx: QueueContext, private readonly delivery: Delivery) {}

  /** Runs now, or when Redis first answers. */
  start(): void {
    const { queueConnection, workerConnection } = this.ctx.options;
    const recover = () => {
      this.recoverActiveQueues().catch((err: unknown) => {
        this.ctx.log.warn({ err }, 'queues: could not look for tasks left active by an earlier run');
      });
    };
    if (queueConnection.status === 'ready') recover();
    else queueConnection.once('ready', recover);
    workerConnection.on('ready', () => {
      clearTimeout(this.reclaimTimer);
      this.reclaimTimer = setTimeout(() => {
        this.reclaimOrphans().catch((err: unknown) => {
          this.ctx.log.warn({ err }, 'queues: could not look for orphaned tasks; they return when their leases expire');
        });
      }, RECLAIM_DELAY_MS);
      this.reclaimTimer.unref();
    });
  }

  stop(): void {
    clearTimeout(this.reclaimTimer);
  }

  private async recoverActiveQueues(): Promise<void> {
    for (const name of await this.ctx.queueNames()) {
      const runtime = this.ctx.runtime(name);
      if (runtime.fetcher) continue;
      const active = await runtime.queue.getActiveCount();
      if (active > 0) {
        this.ctx.log.info({ queue: name, active }, 'queues: tasks left active by an earlier run return when their leases expire');
        this.ctx.fetcherOf(runtime);
      }
    }
  }

  /** Gives back the active tasks locked with one of this gateway's tokens that no lease and no fetch in flight accounts for. */
  private async reclaimOrphans(): Promise<void> {
    const connection = this.ctx.options.workerConnection;
    for (const runtime of [...this.ctx.runtimes.values()]) {
      const worker = runtime.fetcher;
      if (!worker || this.ctx.closing) continue;
      const locks = await activeLocks(connection, runtime.queue);
      // A token holds one task at a time, but the resent fetch (and the
      // completions after it) go on with the orphan's token: the lease of
      // another task under it does not account for this one.
      const accountedFor = (token: string, id: string) => this.ctx.busyTokens.has(token)
        || this.ctx.leases.inQueue(runtime.name).some((lease) => lease.token === token && lease.taskId === id);
      for (const { id, token } of locks) {
        if (!token?.startsWith(`${worker.id}:`) || accountedFor(token, id)) continue;
        const job = await runtime.queue.getJob(id) as TaskJob | undefined;
        // Checked again after the await: a lease or settlement may have begun.
        if (!job || accountedFor(token, id)) continue;
        this.ctx.log.warn({ queue: runtime.name, taskId: id }, 'queues: a task fetched as Redis went down reached no one: giving it back');
        await this.delivery.giveBack(runtime, job, token);
      }
    }
  }
}
