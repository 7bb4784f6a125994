import { ReplyError, type Redis } from 'ioredis';
import { BusError } from '../bus/protocol.js';
import type { QueueLogger } from './queue-logger.js';

export function unavailable(): BusError {
  return new BusError('UNAVAILABLE', 'the queue store (Redis) is unreachable: nothing was changed');
}

/**
 * Runs the Redis operations a caller waits on (enqueue, REST) through the
 * fail-fast connection, bounded in time: while Redis is away the answer is
 * UNAVAILABLE at once, never a hang. Domain errors pass through; a task
 * JSON cannot hold (a stack overflow when BullMQ serialises it) is the
 * task's fault; anything else becomes UNAVAILABLE, saying whether Redis
 * was unreachable or refused the command (a key of the wrong type, say).
 */
export class StoreGuard {
  constructor(private readonly connection: Redis, private readonly timeoutMs: number, private readonly log: QueueLogger) {}

  async run<T>(operation: () => Promise<T>): Promise<T> {
    if (this.connection.status !== 'ready') throw unavailable();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(unavailable()), this.timeoutMs);
    });
    try {
      return await Promise.race([operation(), timeout]);
    } catch (err) {
      if (err instanceof BusError) throw err;
      if (err instanceof RangeError) throw new BusError('INVALID_FRAME', `the task cannot be stored as JSON: ${err.message}`);
      this.log.warn({ err }, 'queues: redis operation failed');
      if (err instanceof ReplyError) {
        throw new BusError('UNAVAILABLE', `the queue store (Redis) refused it: nothing was changed (${(err as Error).message.split('\n')[0]})`);
      }
      throw unavailable();
    } finally {
      clearTimeout(timer);
    }
  }
}
