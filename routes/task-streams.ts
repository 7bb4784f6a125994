import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { BusError } from '../src/bus/protocol.js';
import { assertMayReadQueue } from '../src/queues/queue-access.js';
import { queueNameOf, taskIdOf } from '../src/queues/task-options.js';
import { fromSeqOf } from '../src/task-streams/stream-actions.js';
import { SseStreamSink } from '../src/task-streams/stream-sink.js';
import { ErrorBody } from './errors.js';

const TaskParams = Type.Object({ name: Type.String(), id: Type.String() });
const From = Type.Object({ from: Type.Optional(Type.Integer({ minimum: 1 })) });
const ResumeHeaders = Type.Object({ 'last-event-id': Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' })) });
const EventStream = Type.String({ description: 'text/event-stream: `id:` seq, `event:` chunk, binary (base64), end ({end, result}) or gap ({seq})' });

/**
 * `GET /queues/:name/tasks/:id/stream`: a streamed task's output as
 * Server-Sent Events (bus protocol v3 §4), from `?from=` or after the
 * `Last-Event-ID` a reconnecting EventSource sends; it ends after `end`.
 */
const taskStreamRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const open = new Set<ServerResponse>();
  // Followers wait for chunks without end: the server could not close under them.
  app.addHook('preClose', async () => {
    for (const response of open) response.end();
  });

  app.get('/queues/:name/tasks/:id/stream', {
    schema: {
      params: TaskParams,
      querystring: From,
      headers: ResumeHeaders,
      response: { 200: EventStream, 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 503: ErrorBody },
    },
  }, async (request, reply) => {
    const name = queueNameOf(request.params.name, 'name');
    assertMayReadQueue(request.principal, name);
    const taskId = taskIdOf(request.params.id, 'id');
    const lastEventId = request.headers['last-event-id'];
    const from = lastEventId === undefined ? fromSeqOf(request.query.from) : Number(lastEventId) + 1;
    const owner = `sse:${randomUUID()}`;
    const response = reply.raw;
    const { traceparent } = await app.taskStreams.follow(owner, new SseStreamSink(response), taskId, from, (queue) => {
      if (queue !== name) throw new BusError('UNKNOWN_TASK', `task ${taskId} of queue ${name} has no stream`);
    });
    // Written by hand from here: the follower writes events as they come.
    reply.hijack();
    // The headers the app's hooks set (CORS, security) go out with it.
    for (const [header, value] of Object.entries(reply.getHeaders())) if (value !== undefined) response.setHeader(header, value);
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache',
      // The task's trace context, as the follow receipt carries it on the bus.
      ...(traceparent === undefined ? {} : { traceparent }),
    });
    // Sent now, not with the first chunk: an EventSource is open (not still connecting) before the worker writes.
    response.flushHeaders();
    open.add(response);
    response.on('close', () => {
      open.delete(response);
      app.taskStreams.unfollow(owner, taskId);
    });
  });
};

export default taskStreamRoutes;
