import type { AddressInfo } from 'node:net';
import fp from 'fastify-plugin';
import { ClusterBridge } from '../src/bus/cluster-bridge.js';

/**
 * Scale-out: with REDIS_URL set (a Redis other gateways can share) and
 * BUS_CLUSTER on, this gateway and every other one on that Redis behave as
 * one broker (src/bus/cluster-bridge.ts). Queues are shared already: they
 * are BullMQ queues in that Redis.
 */
export default fp(async function busClusterPlugin(app) {
  const { config } = app;
  if (!config.busCluster || !config.redisUrl) return;
  const bridge = new ClusterBridge({
    router: app.bus.router,
    publisher: app.redis.client,
    subscriber: app.redis.createConnection('subscriber'),
    channelPrefix: config.busClusterChannel,
    heartbeatMs: config.busClusterHeartbeatMs,
    log: app.log,
    info: () => {
      const address = app.server.address() as AddressInfo | null;
      return {
        host: address?.address ?? null,
        port: address?.port ?? null,
        pid: process.pid,
        connections: app.bus.router.connections.size,
      };
    },
  });
  bridge.start();
  // Its hello left before the server listened: the others learn its port now.
  app.addHook('onListen', async () => {
    bridge.announce();
  });
  app.log.info({ instanceId: bridge.instanceId, channel: config.busClusterChannel }, 'bus cluster: joined');
  // preClose: the goodbye must leave before the Redis connections close.
  app.addHook('preClose', async () => {
    await bridge.stop();
  });
}, { name: 'brainstem-bus-cluster', dependencies: ['brainstem-redis', 'brainstem-bus'] });
