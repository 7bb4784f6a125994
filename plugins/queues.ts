import fp from 'fastify-plugin';
import type { Redis } from 'ioredis';
import { registerQueueActions } from '../src/queues/queue-actions.js';
import { QueueService } from '../src/queues/queue-service.js';
import { outcomeEvents } from '../src/queues/task-outcome.js';

declare module 'fastify' {
  interface FastifyInstance {
    queues: QueueService;
  }
}

const CONNECT_WAIT_MS = 3000;

/** Resolves once the connection is ready, or after a while if Redis is away (it reconnects by itself). */
function settled(connection: Redis): Promise<void> {
  if (connection.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, CONNECT_WAIT_MS);
    function done() {
      clearTimeout(timer);
      connection.off('ready', done);
      resolve();
    }
    connection.once('ready', done);
  });
}

/**
 * The queue organ: BullMQ queues behind the bus actions enqueue, pull, ack
 * and fail. Outcomes go out on the bus; a connection that closes gives its
 * leased tasks back at once.
 */
export default fp(async function queuesPlugin(app) {
  const { config, bus } = app;
  const queueConnection = app.redis.createConnection('queue');
  const workerConnection = app.redis.createConnection('worker');
  // A fail-fast connection still connecting would refuse the first enqueues.
  if (app.redis.isReady()) await Promise.all([settled(queueConnection), settled(workerConnection)]);
  const service = new QueueService({
    queueConnection,
    workerConnection,
    createEventConnection: () => app.redis.createConnection('worker'),
    prefix: config.queuePrefix,
    defaults: { attempts: config.queueAttempts, backoff: { type: config.queueBackoffType, delay: config.queueBackoffMs } },
    overrides: config.queueOverrides,
    leaseMs: config.queueLeaseMs,
    stalledCheckMs: config.queueStalledCheckMs,
    idleMs: config.queueIdleMs,
    maxLive: config.queueMaxLive,
    maxPerConsumer: config.queueMaxPerConnection,
    keepCompleted: config.queueKeepCompleted,
    storeTimeoutMs: config.queueStoreTimeoutMs,
    log: app.log,
    openStream: (queue, taskId, traceparent) => app.taskStreams.open(queue, taskId, traceparent),
    onOutcome(outcome) {
      void app.taskStreams.settled(outcome);
      for (const event of outcomeEvents(outcome)) bus.publisher.publish(event);
      if (outcome.kind === 'completed' || outcome.kind === 'failed' || outcome.kind === 'dead') {
        app.metrics.taskSettled(outcome.queue, outcome.kind, outcome.runMs);
        if (app.spans && outcome.traceparent !== undefined && outcome.runMs !== undefined) {
          const now = Date.now();
          app.spans.record({
            name: `task ${outcome.queue}`, traceparent: outcome.traceparent, startMs: now - outcome.runMs, endMs: now,
            attributes: { 'brainstem.queue': outcome.queue, 'brainstem.task_id': outcome.taskId, 'brainstem.attempt': outcome.attempts },
            ...(outcome.kind === 'completed' ? {} : { error: outcome.reason ?? 'failed' }),
          });
        }
      }
    },
    onQueueLimit() {
      app.metrics.queueRefused();
    },
    onEvicted(queue) {
      app.metrics.queueEvicted(queue);
    },
    onUndeliverable(queue) {
      app.metrics.taskUndeliverable(queue);
    },
    onDelivered(queue, waitMs, traceparent) {
      app.metrics.taskDelivered(queue, waitMs);
      if (app.spans && traceparent !== undefined) {
        const now = Date.now();
        app.spans.record({ name: `wait ${queue}`, traceparent, startMs: now - waitMs, endMs: now, attributes: { 'brainstem.queue': queue } });
      }
    },
  });
  registerQueueActions(bus.dispatcher, service, app.log);
  bus.router.onDetach((connection) => service.release(connection.id));
  app.decorate('queues', service);
  service.start();

  // Informational: Redis itself is the required 'redis' check.
  app.health.register('queues', () => ({ ok: true, detail: `${service.leasedCount} tasks leased` }), false);
  app.addHook('onClose', async () => {
    await service.close();
  });
}, { name: 'brainstem-queues', dependencies: ['brainstem-redis', 'brainstem-bus', 'brainstem-metrics', 'brainstem-task-streams'] });
