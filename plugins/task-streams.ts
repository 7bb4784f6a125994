import { randomUUID } from 'node:crypto';
import fp from 'fastify-plugin';
import { registerStreamActions } from '../src/task-streams/stream-actions.js';
import { TaskStreamStore } from '../src/task-streams/task-stream-store.js';
import { TaskStreams } from '../src/task-streams/task-streams.js';

declare module 'fastify' {
  interface FastifyInstance {
    taskStreams: TaskStreams;
  }
}

/**
 * Streamed task output (bus protocol v3): registered before the queue
 * organ, which opens a streamed task's stream at its enqueue and ends it
 * with the task; chunks need the queue organ's leases, looked up per frame.
 */
export default fp(async function taskStreamsPlugin(app) {
  const { config, bus } = app;
  const store = new TaskStreamStore(app.redis.client, config.queuePrefix, { maxChunks: config.streamMaxChunks, keepMs: config.streamKeepMs }, randomUUID());
  const streams = new TaskStreams(store, { blocking: app.redis.createConnection('worker'), shared: app.redis.client }, {
    window: config.streamWindow,
    windowBytes: config.streamWindowBytes,
    maxBytes: config.streamMaxBytes,
    // A follower's frames stay well within what gets a subscriber cut as a slow consumer.
    sinkHighWater: Math.floor(config.busMaxBacklogBytes / 4),
  }, app.log, {
    chunkStored: (queue, bytes) => app.metrics.streamChunkStored(queue, bytes),
    chunkSent: (behind) => app.metrics.streamChunkSent(behind),
    ...(app.spans ? { span: (span) => app.spans?.record(span) } : {}),
  });
  registerStreamActions(bus.dispatcher, streams, (consumerId, taskId) => app.queues.heldTask(consumerId, taskId));
  bus.router.onDetach((connection) => streams.detach(connection.id));
  app.decorate('taskStreams', streams);
  app.addHook('onClose', async () => {
    streams.close();
  });
}, { name: 'brainstem-task-streams', dependencies: ['brainstem-redis', 'brainstem-bus', 'brainstem-metrics'] });
