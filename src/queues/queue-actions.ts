import type { BusConnection } from '../bus/bus-connection.js';
import type { BusLogger, FrameDispatcher } from '../bus/frame-dispatcher.js';
import { BusError, type ClientFrame } from '../bus/protocol.js';
import { assertEnqueueRights, assertQueueRight } from './queue-access.js';
import type { QueueService } from './queue-service.js';
import { TaskStateError } from './task-state-error.js';
import { parseTaskOptions, queueNameOf, taskIdOf } from './task-options.js';

const MAX_REASON_LENGTH = 4000;

/** The queue named by a frame, if the connection may use it. */
function allowedQueue(connection: BusConnection, frame: ClientFrame): string {
  const queue = queueNameOf(frame.queue);
  assertQueueRight(connection.principal, queue);
  return queue;
}

function cancelReasonOf(value: unknown): string {
  if (typeof value !== 'string' || value === '') throw new BusError('INVALID_FRAME', 'reason must be a non-empty string');
  return value.slice(0, MAX_REASON_LENGTH);
}

function reasonOf(value: unknown): string {
  if (value === undefined || value === null || value === '') return 'failed (no reason given)';
  if (typeof value !== 'string') throw new BusError('INVALID_FRAME', 'reason must be a string');
  return value.slice(0, MAX_REASON_LENGTH);
}

/** The work-queue actions of the protocol: enqueue, pull, ack, fail, progress, cancel. */
export function registerQueueActions(dispatcher: FrameDispatcher, service: QueueService, log: BusLogger): void {
  const debug = log.isLevelEnabled?.('debug') ?? false;

  dispatcher.register('enqueue', async (connection, frame) => {
    const queue = queueNameOf(frame.queue);
    if (frame.task === undefined) throw new BusError('INVALID_FRAME', 'task is required (any JSON: the payload)');
    const opts = parseTaskOptions(frame.opts);
    assertEnqueueRights(connection.principal, queue, opts);
    service.admit(connection.id, queue);
    const taskId = await service.enqueue(queue, frame.task, opts);
    if (debug) log.debug({ clientId: connection.id, queue, taskId }, 'enqueue');
    return { taskId };
  });

  dispatcher.register('pull', (connection, frame) => {
    const queue = allowedQueue(connection, frame);
    service.pull(connection, queue, frame.id);
    if (debug) log.debug({ clientId: connection.id, queue }, 'pull');
  });

  dispatcher.register('ack', async (connection, frame) => {
    const taskId = taskIdOf(frame.taskId);
    await service.ack(connection, taskId, frame.result);
    if (debug) log.debug({ clientId: connection.id, taskId }, 'ack');
  });

  dispatcher.register('fail', async (connection, frame) => {
    const taskId = taskIdOf(frame.taskId);
    const reason = reasonOf(frame.reason);
    await service.fail(connection, taskId, reason);
    if (debug) log.debug({ clientId: connection.id, taskId, reason }, 'fail');
  });

  dispatcher.register('progress', async (connection, frame) => {
    const taskId = taskIdOf(frame.taskId);
    await service.progress(connection, taskId, frame.progress);
  });

  dispatcher.register('cancel', async (connection, frame) => {
    const queue = allowedQueue(connection, frame);
    const taskId = taskIdOf(frame.taskId);
    const reason = frame.reason === undefined ? undefined : cancelReasonOf(frame.reason);
    try {
      await service.cancel(queue, taskId, reason);
    } catch (err) {
      // On the bus, a task that can no longer be cancelled is as unknown as one that never was.
      if (err instanceof TaskStateError) throw new BusError('UNKNOWN_TASK', err.message);
      throw err;
    }
    if (debug) log.debug({ clientId: connection.id, queue, taskId }, 'cancel');
  });
}
