import { BusError } from '../bus/protocol.js';
import type { Principal } from '../bus/principal.js';
import type { TaskOptions } from './task-options.js';

/** Seeing a queue and its tasks over REST: an admin sees every queue, other tokens those they have the queue right on. */
export function mayReadQueue(principal: Principal, queue: string): boolean {
  return principal.admin || principal.may('queue', queue);
}

export function assertMayReadQueue(principal: Principal, queue: string): void {
  if (!mayReadQueue(principal, queue)) throw new BusError('FORBIDDEN', `not allowed to see queue ${queue}`);
}

/** Enqueue, pull and cancel need the queue right. */
export function assertQueueRight(principal: Principal, queue: string): void {
  if (!principal.may('queue', queue)) throw new BusError('FORBIDDEN', `not allowed to use queue ${queue}`);
}

/**
 * An enqueue needs the queue right and, with `opts.replyTo`, the publish
 * right on that topic: the task's outcome is published there.
 */
export function assertEnqueueRights(principal: Principal, queue: string, options: TaskOptions): void {
  assertQueueRight(principal, queue);
  if (options.replyTo !== undefined && !principal.may('publish', options.replyTo)) {
    throw new BusError('FORBIDDEN', `not allowed to publish on ${options.replyTo} (opts.replyTo): nothing was stored`);
  }
}

/** Admin only: retry, remove, pause, resume and cancel over REST change what workers get. */
export function assertAdmin(principal: Principal): void {
  if (!principal.admin) throw new BusError('FORBIDDEN', 'only an admin token may change queues');
}
