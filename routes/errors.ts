import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { BusError, type ErrorCode } from '../src/bus/protocol.js';

/** The error body of every route: the same `{error, code}` as on the bus. */
export const ErrorBody = Type.Object({ error: Type.String(), code: Type.String() });

const STATUS: Partial<Record<ErrorCode, number>> = {
  FORBIDDEN: 403,
  UNKNOWN_TASK: 404,
  PAYLOAD_TOO_LARGE: 413,
  RATE_LIMITED: 429,
  TOO_MANY_QUEUES: 429,
  UNAVAILABLE: 503,
};

/** Answers a BusError with its HTTP status; anything else is rethrown to Fastify. */
export function errorReply(reply: FastifyReply, err: unknown): FastifyReply {
  if (!(err instanceof BusError)) throw err;
  return reply.code(STATUS[err.code] ?? 400).send({ error: err.message, code: err.code });
}
