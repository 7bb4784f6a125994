import type { Redis } from 'ioredis';
import type { LiveQueues } from './live-queues.js';
import type { QueueLogger } from './queue-logger.js';

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
 *   after their lease (LiveQueue.reclaimOrphans).
 */
export class Recovery {
  private reclaimTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly queues: LiveQueues,
    private readonly connections: { queueConnection: Redis; workerConnection: Redis },
    private readonly log: QueueLogger,
  ) {}

  /** Runs now, or when Redis first answers. */
  start(): void {
    const { queueConnection, workerConnection } = this.connections;
    const recover = () => {
      this.recoverActiveQueues().catch((err: unknown) => {
        this.log.warn({ err }, 'queues: could not look for tasks left active by an earlier run');
      });
    };
    if (queueConnection.status === 'ready') recover();
    else queueConnection.once('ready', recover);
    workerConnection.on('ready', () => {
      clearTimeout(this.reclaimTimer);
      this.reclaimTimer = setTimeout(() => {
        this.reclaimOrphans().catch((err: unknown) => {
          this.log.warn({ err }, 'queues: could not look for orphaned tasks; they return when their leases expire');
        });
      }, RECLAIM_DELAY_MS);
      this.reclaimTimer.unref();
    });
  }

  stop(): void {
    clearTimeout(this.reclaimTimer);
  }

  private async recoverActiveQueues(): Promise<void> {
    for (const name of await this.queues.names()) {
      const live = this.queues.open(name);
      if (live.hasFetcher) continue;
      const active = await live.queue.getActiveCount();
      if (active > 0) {
        this.log.info({ queue: name, active }, 'queues: tasks left active by an earlier run return when their leases expire');
        live.ensureFetcher();
      }
    }
  }

  private async reclaimOrphans(): Promise<void> {
    for (const live of [...this.queues.values()]) await live.reclaimOrphans();
  }
}
