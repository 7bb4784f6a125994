import { createRequire } from 'node:module';
import t from 'tap';
import { TickBatchedRedis } from '../src/redis/tick-batched-redis.js';
import { TickWriteBatch, type CorkableStream } from '../src/streams/tick-write-batch.js';
import { startRedis } from './helpers/redis.js';

// TickBatchedRedis overrides ioredis's sendCommand and corks its `stream`:
// both checked against the installed ioredis. Upgrading it: run this first.
const redis = await startRedis(t);

t.test('the installed ioredis is the version this contract was checked against', async (t) => {
  t.equal((createRequire(import.meta.url)('ioredis/package.json') as { version: string }).version, '6.0.0');
});

t.test('every command goes through sendCommand; its stream is corked for the tick, and replies are right', async (t) => {
  const client = new TickBatchedRedis({ port: redis.port, host: '127.0.0.1' }, new TickWriteBatch());
  t.teardown(() => client.disconnect());
  await client.ping();
  const stream = (client as unknown as { stream: CorkableStream }).stream;
  t.equal(typeof stream.cork, 'function', 'ioredis\'s stream is a corkable socket');
  t.equal(stream.writableCorked, 0);
  const sent: string[] = [];
  const original = client.sendCommand.bind(client);
  client.sendCommand = ((command: { name: string }, s?: unknown) => {
    sent.push(command.name);
    return original(command as never, s as never);
  }) as typeof client.sendCommand;
  const replies = Promise.all([client.set('k', '1'), client.incr('k'), client.eval('return 7', 0), client.get('k')]);
  t.equal(stream.writableCorked, 1, 'held for the rest of the tick');
  t.same(await replies, ['OK', 2, 7, '2']);
  t.same(sent, ['set', 'incr', 'eval', 'get'], 'each command, scripts included, through sendCommand');
  t.equal(stream.writableCorked, 0, 'released when the tick ended');
});
