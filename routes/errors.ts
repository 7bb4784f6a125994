import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { BusError } from '../src/bus/protocol.js';
import { ERROR_CODES, type ErrorCode, type ErrorReply } from '../src/protocol/error-codes.js';
import { redactTokensInText } from '../src/redaction.js';

/** The error body of every route: the same `{error, code}` as on the bus. */
export const ErrorBody = Type.Object({ error: Type.String(), code: Type.String() });

/** Codes Fastify gives its own client errors, mapped to the registry's. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'INVALID_FRAME',
};

const INTERNAL = { error: 'internal error', code: 'INTERNAL' } satisfies ErrorReply;

function sendCode(reply: FastifyReply, code: ErrorCode, message: string): FastifyReply {
  const { http, headers } = ERROR_CODES[code];
  if (headers) reply.headers(headers);
  return reply.code(http).send({ error: message, code } satisfies ErrorReply);
}

/**
 * The app's one error handler: routes and plugins throw, and every error
 * leaves here as `{error, code}`. A BusError (TaskStateError is one) and a
 * schema's refusal get their code's status and headers from the registry;
 * Fastify's and its plugins' own client errors keep their status, their
 * code mapped to the registry's where it has one; anything else is a bug,
 * logged and answered INTERNAL.
 */
export function errorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  // A refused WebSocket upgrade answers on the raw socket, which no HTTP
  // machinery owns any more: close it once the answer is out, or it would
  // stay open and hold app.close() forever.
  if (request.headers.upgrade !== undefined) reply.raw.once('finish', () => request.raw.socket.destroy());
  if (err.validation) return sendCode(reply, 'INVALID_FRAME', err.message);
  if (err instanceof BusError) return sendCode(reply, err.code, err.message);
  const status = err.statusCode ?? 500;
  if (status < 500) return reply.code(status).send({ error: err.message, code: FASTIFY_CODES[err.code] ?? err.code ?? 'INVALID_FRAME' });
  request.log.error({ err }, 'request failed');
  return reply.code(status).send(INTERNAL);
}

/** A route that does not exist; Fastify's own 404 would quote the URL, token included. */
export async function routeNotFound(request: FastifyRequest): Promise<never> {
  throw new BusError('NOT_FOUND', `Route ${request.method}:${redactTokensInText(request.url)} not found`);
}
