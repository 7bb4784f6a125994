import t from 'tap';
// The user's own client, verbatim (test/fixtures/seed): only its URL changes.
// @ts-expect-error: plain JavaScript fixture without types
import { BrokerClient } from './fixtures/seed/brokerClient.js';
import { startGateway } from './helpers/gateway.js';
import { until } from './helpers/test-socket.js';

interface SeedEvent { type: string; source: string; payload: unknown; timestamp: string }
interface SeedClient {
  connect(): Promise<void>;
  subscribe(topic: string, handler: (event: SeedEvent) => void): void;
  unsubscribe(topic: string): void;
  publish(type: string, payload: unknown, opts?: object): void;
  socket: { close(): void; on(event: string, fn: (data: Buffer) => void): void };
}

t.test("the seed's BrokerClient subscribes, publishes and receives events unchanged", async (t) => {
  const gw = await startGateway(t);
  const tts: SeedClient = new BrokerClient({ url: gw.busUrl, id: 'tts' });
  const cephalon: SeedClient = new BrokerClient({ url: gw.busUrl, id: 'cephalon' });
  await tts.connect();
  await cephalon.connect();
  t.teardown(() => { tts.socket.close(); cephalon.socket.close(); });
  const errors: string[] = [];
  tts.socket.on('message', (data) => { if (String(data).includes('"error"')) errors.push(String(data)); });

  const received = new Promise<SeedEvent>((resolve) => tts.subscribe('agent.reply', resolve));
  // The seed client sends no receipts: wait until the gateway has the subscription.
  await until(() => Boolean(gw.app.bus.router.subscriptionCounts()['agent.reply']), 5000, 'the seed subscription at the gateway');
  cephalon.publish('agent.reply', { text: 'hello' }, { correlationId: 'c-1' });
  const event = await received;
  t.equal(event.type, 'agent.reply');
  t.same(event.payload, { text: 'hello' });
  t.equal(event.source, 'cephalon', "the seed client's own source is kept");
  t.equal((event as unknown as { correlationId: string }).correlationId, 'c-1');

  tts.unsubscribe('agent.reply');
  await until(() => !gw.app.bus.router.subscriptionCounts()['agent.reply'], 5000, 'the seed unsubscribe at the gateway');
  t.same(errors, [], 'the welcome frame and receipts-less frames produce no errors');
});
