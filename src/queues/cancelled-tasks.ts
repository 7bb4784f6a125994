import type { Redis } from 'ioredis';
import type { TaskView } from './queue-types.js';

/**
 * BullMQ has no cancelled state: a cancelled task leaves its BullMQ queue
 * (so nothing retries it) and its last view is kept here, so that
 * `GET /queues/:name/tasks/:id` still answers `cancelled`. Per queue, a
 * hash of views and a sorted set of when, trimmed to the newest `keep`.
 * The keys live outside BullMQ's own (`PREFIX:QUEUE:…` is BullMQ's).
 */
export class CancelledTasks {
  constructor(private readonly connection: Redis, private readonly prefix: string, private readonly keep: number) {}

  async save(view: TaskView): Promise<void> {
    const { views, order } = this.keys(view.queue);
    const results = await this.connection.multi()
      .hset(views, view.id, JSON.stringify(view))
      .zadd(order, Date.now(), view.id)
      .zcard(order)
      .exec();
    const count = Number(results?.[2]?.[1] ?? 0);
    if (count > this.keep) {
      const dropped = await this.connection.zpopmin(order, count - this.keep);
      const ids = dropped.filter((_, index) => index % 2 === 0);
      if (ids.length > 0) await this.connection.hdel(views, ...ids);
    }
  }

  async find(queue: string, taskId: string): Promise<TaskView | null> {
    const raw = await this.connection.hget(this.keys(queue).views, taskId);
    return raw ? JSON.parse(raw) as TaskView : null;
  }

  /** Returns whether there was one. */
  async delete(queue: string, taskId: string): Promise<boolean> {
    const { views, order } = this.keys(queue);
    const [[, removed] = []] = await this.connection.multi().hdel(views, taskId).zrem(order, taskId).exec() ?? [];
    return Number(removed) > 0;
  }

  private keys(queue: string): { views: string; order: string } {
    const base = `brainstem:cancelled:${this.prefix}:${queue}`;
    return { views: base, order: `${base}:order` };
  }
}
