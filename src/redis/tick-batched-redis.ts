import { Redis, type Command, type RedisOptions } from 'ioredis';
import type { CorkableStream, TickWriteBatch } from '../streams/tick-write-batch.js';

type Stream = Parameters<Redis['sendCommand']>[1];

/**
 * An ioredis client whose commands of one tick leave in one write: the
 * gateway issues many small commands per tick (a Redis reply resolving
 * forty leases sends forty more), and one write each was a large part of
 * its CPU time in the Q1 profile. ioredis's own auto-pipelining was measured
 * slower here (Q1 in `npm run bench`).
 */
export class TickBatchedRedis extends Redis {
  constructor(options: RedisOptions, private readonly batch: TickWriteBatch) {
    // BullMQ reads replies in ioredis's default (legacy) shape.
    super({ ...options, replyMapping: 'legacy' });
  }

  override sendCommand(command: Command, stream?: Stream): unknown {
    const socket = this.stream as (CorkableStream & { writable: boolean }) | undefined;
    if (!stream && socket?.writable) this.batch.hold(socket);
    return super.sendCommand(command, stream);
  }
}
