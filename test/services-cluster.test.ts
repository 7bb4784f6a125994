import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { startRedis } from './helpers/redis.js';
import { TestSocket, until } from './helpers/test-socket.js';

type Services = { services: { name: string; connections: { clientId: string; subscriptions: string[] }[] }[]; cluster?: unknown };

t.test('GET /services shows the whole cluster: a connection held by the other gateway is listed; scope=local shows only this one', async (t) => {
  const redis = await startRedis(t);
  const a = await startGateway(t, { redisUrl: redis.url, busClusterChannel: 'services-two', busClusterHeartbeatMs: 100 });
  const b = await startGateway(t, { redisUrl: redis.url, busClusterChannel: 'services-two', busClusterHeartbeatMs: 100 });
  // Formed: each knows the other's port, so it can ask it.
  await until(() => {
    const cluster = a.app.bus.router.describe({ offset: 0, limit: 1 }).cluster as { instances: { port: number | null }[] } | undefined;
    return cluster?.instances.length === 2 && cluster.instances.every((instance) => instance.port !== null);
  }, 10_000, 'the two gateways knowing each other');

  const onB = await TestSocket.open(`${b.busUrl}?name=tts`);
  t.teardown(() => onB.close());
  await onB.call({ action: 'subscribe', topic: 'voice.*' });

  const whole = await (await fetch(`${a.httpUrl}/services`)).json() as Services;
  t.same(whole.cluster, { gateways: 2, answered: 2 });
  const tts = whole.services.find((service) => service.name === 'tts');
  t.match(tts?.connections, [{ subscriptions: ['voice.*'] }], "the other gateway's connection, with its subscriptions");

  const local = await (await fetch(`${a.httpUrl}/services?scope=local`)).json() as Services;
  t.notOk(local.services.some((service) => service.name === 'tts'), 'scope=local: this gateway only');
  t.equal(local.cluster, undefined);
});
