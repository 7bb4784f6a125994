import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { BusError } from '../src/bus/protocol.js';
import { assertAdmin, assertEnqueueRights, assertMayReadQueue, mayReadQueue } from '../src/queues/queue-access.js';
import { parseTaskOptions, queueNameOf, taskIdOf } from '../src/queues/task-options.js';
import { ErrorBody } from './errors.js';

const Counts = Type.Object({
  waiting: Type.Integer(), active: Type.Integer(), delayed: Type.Integer(), completed: Type.Integer(), failed: Type.Integer(),
});
const Puller = Type.Object({ clientId: Type.String(), name: Type.String(), credits: Type.Integer(), leased: Type.Integer() });
const Quantiles = Type.Object({ count: Type.Integer(), p50: Type.Union([Type.Number(), Type.Null()]), p95: Type.Union([Type.Number(), Type.Null()]) });
const Times = Type.Object({ wait: Quantiles, run: Quantiles });
const Summary = Type.Object({
  name: Type.String(), counts: Counts, paused: Type.Boolean(), pullers: Type.Array(Puller), times: Type.Optional(Times),
});
const Task = Type.Object({
  id: Type.String(),
  queue: Type.String(),
  payload: Type.Unknown(),
  createdAt: Type.String(),
  attempts: Type.Integer(),
  state: Type.String(),
  maxAttempts: Type.Integer(),
  priority: Type.Integer(),
  replyTo: Type.Union([Type.String(), Type.Null()]),
  finishedAt: Type.Union([Type.String(), Type.Null()]),
  result: Type.Unknown(),
  reasons: Type.Array(Type.String()),
  failedReason: Type.Union([Type.String(), Type.Null()]),
  progress: Type.Unknown(),
  holder: Type.Union([Type.String(), Type.Null()]),
  /** v3: enqueued with `opts.stream`; its output is at `GET /queues/:name/tasks/:id/stream`. */
  stream: Type.Optional(Type.Literal(true)),
});
const Tasks = Type.Object({
  waiting: Type.Array(Task), active: Type.Array(Task), delayed: Type.Array(Task), completed: Type.Array(Task), failed: Type.Array(Task),
});
const NameParams = Type.Object({ name: Type.String() });
const TaskParams = Type.Object({ name: Type.String(), id: Type.String() });
const Page = Type.Object({
  offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 20 })),
});
const Done = Type.Object({ ok: Type.Literal(true), taskId: Type.String() });
const Paused = Type.Object({ ok: Type.Literal(true), name: Type.String(), paused: Type.Boolean() });
const Errors = { 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody };

/**
 * `/queues`: what is queued, by whom it is pulled, and the admin's levers.
 * Errors carry a code; the app's error handler answers them.
 */
const queueRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const service = app.queues;

  app.get('/queues', {
    schema: { response: { 200: Type.Object({ queues: Type.Array(Summary) }), 503: ErrorBody } },
  }, async (request) => {
    const queues = await service.listQueues((name) => mayReadQueue(request.principal, name));
    // Wait and run times (ms, p50/p95 over the last minutes) as this gateway saw them.
    return { queues: queues.map((queue) => ({ ...queue, times: app.metrics.taskTimes(queue.name) })) };
  });

  app.get('/queues/:name', {
    schema: {
      params: NameParams,
      querystring: Page,
      response: { 200: Type.Intersect([Summary, Type.Object({ tasks: Tasks })]), ...Errors },
    },
  }, async (request) => {
    const name = queueNameOf(request.params.name, 'name');
    assertMayReadQueue(request.principal, name);
    return service.describeQueue(name, { offset: request.query.offset ?? 0, limit: request.query.limit ?? 20 });
  });

  app.get('/queues/:name/tasks/:id', {
    schema: { params: TaskParams, response: { 200: Task, ...Errors } },
  }, async (request) => {
    const name = queueNameOf(request.params.name, 'name');
    assertMayReadQueue(request.principal, name);
    return service.getTask(name, taskIdOf(request.params.id, 'id'));
  });

  app.post('/queues/:name/tasks', {
    schema: {
      params: NameParams,
      body: Type.Object({ task: Type.Unknown(), opts: Type.Optional(Type.Unknown()) }),
      response: { 201: Done, ...Errors },
    },
  }, async (request, reply) => {
    const name = queueNameOf(request.params.name, 'name');
    if (request.body.task === undefined) throw new BusError('INVALID_FRAME', 'task is required (any JSON: the payload)');
    const options = parseTaskOptions(request.body.opts);
    assertEnqueueRights(request.principal, name, options);
    const taskId = await service.enqueue(name, request.body.task, options);
    return reply.code(201).send({ ok: true as const, taskId });
  });

  app.post('/queues/:name/tasks/:id/retry', {
    schema: { params: TaskParams, response: { 200: Type.Intersect([Done, Type.Object({ from: Type.String() })]), ...Errors } },
  }, async (request) => {
    assertAdmin(request.principal);
    const from = await service.retry(queueNameOf(request.params.name, 'name'), taskIdOf(request.params.id, 'id'));
    return { ok: true as const, taskId: request.params.id, from };
  });

  app.post('/queues/:name/tasks/:id/cancel', {
    schema: {
      params: TaskParams,
      body: Type.Optional(Type.Union([Type.Object({ reason: Type.Optional(Type.String({ minLength: 1, maxLength: 4000 })) }), Type.Null()])),
      response: { 200: Task, ...Errors },
    },
  }, async (request) => {
    assertAdmin(request.principal);
    return service.cancel(queueNameOf(request.params.name, 'name'), taskIdOf(request.params.id, 'id'), request.body?.reason);
  });

  app.delete('/queues/:name/tasks/:id', {
    schema: { params: TaskParams, response: { 200: Done, ...Errors } },
  }, async (request) => {
    assertAdmin(request.principal);
    await service.remove(queueNameOf(request.params.name, 'name'), taskIdOf(request.params.id, 'id'));
    return { ok: true as const, taskId: request.params.id };
  });

  for (const action of ['pause', 'resume'] as const) {
    app.post(`/queues/:name/${action}`, {
      schema: { params: NameParams, response: { 200: Paused, ...Errors } },
    }, async (request) => {
      assertAdmin(request.principal);
      const name = queueNameOf(request.params.name, 'name');
      if (action === 'pause') await service.pause(name);
      else await service.resume(name);
      return { ok: true as const, name, paused: action === 'pause' };
    });
  }
};

export default queueRoutes;
