import type { FrameDispatcher } from '../bus/frame-dispatcher.js';
import { BusError, type ClientFrame } from '../bus/protocol.js';
import { assertMayReadQueue } from '../queues/queue-access.js';
import { taskIdOf } from '../queues/task-options.js';
import { BusStreamSink } from './stream-sink.js';
import type { HeldTask, TaskStreams } from './task-streams.js';

/** The first seq of a follow: a whole number from 1 (the default: the whole stream). */
export function fromSeqOf(value: unknown, field = 'from'): number {
  if (value === undefined || value === null) return 1;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new BusError('INVALID_FRAME', `${field} must be a whole number from 1 (the first seq to get)`);
  }
  return value;
}

function textOf(frame: ClientFrame): string {
  if (frame.data === undefined) throw new BusError('INVALID_FRAME', 'data is required (any JSON; binary chunks go in binary frames)');
  return JSON.stringify(frame.data);
}

/**
 * The stream actions of bus protocol v3: `chunk` (text, or a binary
 * frame) from a task's holder, `follow` and `unfollow` by anyone who may
 * read the task's queue.
 */
export function registerStreamActions(
  dispatcher: FrameDispatcher,
  streams: TaskStreams,
  heldTask: (consumerId: string, taskId: string) => HeldTask | undefined,
): void {
  dispatcher.register('chunk', async (connection, frame) => {
    const taskId = taskIdOf(frame.taskId);
    const data = textOf(frame);
    return { seq: await streams.write(heldTask(connection.id, taskId), taskId, data) };
  });

  dispatcher.registerBinary('chunk', async (connection, frame, body) => {
    const taskId = taskIdOf(frame.taskId);
    return { seq: await streams.write(heldTask(connection.id, taskId), taskId, body) };
  });

  dispatcher.register('follow', async (connection, frame) => {
    const taskId = taskIdOf(frame.taskId);
    const from = fromSeqOf(frame.from);
    return streams.follow(connection.id, new BusStreamSink(connection), taskId, from, (queue) => assertMayReadQueue(connection.principal, queue));
  });

  dispatcher.register('unfollow', (connection, frame) => {
    streams.unfollow(connection.id, taskIdOf(frame.taskId));
  });
}
