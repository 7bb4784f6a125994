import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import t from 'tap';
import WebSocket from 'ws';
import { beatingProcess } from './helpers/beating-process.js';
import { edgeConfig } from './helpers/edge.js';
import { startGateway } from './helpers/gateway.js';
import { TestSocket } from './helpers/test-socket.js';
import { startHttpUpstream, startWsEchoUpstream } from './helpers/upstreams.js';

type Frame = Record<string, unknown>;

t.test('a proxy route naming its service answers 503 SERVICE_DOWN while no instance beats, without touching the upstream', async (t) => {
  const upstream = await startHttpUpstream(t);
  const gw = await startGateway(t, {
    heartbeatTimeoutMs: 1500,
    heartbeatCheckIntervalMs: 500,
    // Only reported when quiet: the same process beats again afterwards.
    heartbeatStop: false,
    edge: edgeConfig({
      proxy: [
        { prefix: '/tts', upstream: upstream.url, websocket: false, auth: false, rewritePrefix: '', service: 'tts' },
        { prefix: '/plain', upstream: upstream.url, websocket: false, auth: false, rewritePrefix: '' },
      ],
    }),
  });
  const watcher = await TestSocket.open(`${gw.busUrl}?name=watcher`);
  t.teardown(() => watcher.close());
  await watcher.call({ action: 'subscribe', topic: 'service.*' });

  const before = await fetch(`${gw.httpUrl}/tts/speak`);
  t.equal(before.status, 503, 'no instance has ever beaten');
  t.match(await before.json(), { code: 'SERVICE_DOWN', error: /tts/ });
  t.equal(before.headers.get('retry-after'), '1');
  t.equal((await fetch(`${gw.httpUrl}/plain/x`)).status, 200, 'a route without `service` is not gated');
  t.equal(upstream.seen.length, 1, 'only the ungated request reached the upstream');

  const tts = await beatingProcess(t);
  t.equal(await tts.beat(`${gw.httpUrl}/heartbeat`, 'tts'), 200);
  t.match((await watcher.event('service.up')).event, { payload: { name: 'tts' } });
  const up = await fetch(`${gw.httpUrl}/tts/speak?text=hi`);
  t.equal(up.status, 200, 'open once an instance beats');
  t.match(await up.json(), { url: '/speak?text=hi' });
  t.equal(upstream.seen.length, 2);

  const services = await (await fetch(`${gw.httpUrl}/services`)).json() as { services: Frame[] };
  t.match(services.services.find((s) => s.name === 'tts'), { status: 'alive', routes: ['/tts'] }, '/services names the route');

  t.match((await watcher.event('service.down', 5000)).event, { payload: { name: 'tts' } });
  const down = await fetch(`${gw.httpUrl}/tts/speak`);
  t.equal(down.status, 503, 'closed as soon as service.down is out');
  t.match(await down.json(), { code: 'SERVICE_DOWN' });
  t.ok(Number(down.headers.get('retry-after')) >= 1, 'with Retry-After');
  t.equal(upstream.seen.length, 2, 'the upstream saw nothing while the service was down');

  t.equal(await tts.beat(`${gw.httpUrl}/heartbeat`, 'tts'), 200);
  const again = await fetch(`${gw.httpUrl}/tts/again`);
  t.equal(again.status, 200, 'open again after the next beat');
  t.equal(upstream.seen.length, 3);
  t.equal(upstream.seen[2]?.url, '/again');
});

t.test('a WebSocket route naming its service refuses the upgrade with 503 while the service is down', async (t) => {
  const upstream = await startWsEchoUpstream(t);
  const gw = await startGateway(t, {
    heartbeatTimeoutMs: 1500,
    heartbeatCheckIntervalMs: 500,
    edge: edgeConfig({ proxy: [{ prefix: '/voice', upstream: upstream.url, websocket: true, auth: false, rewritePrefix: '', service: 'voice' }] }),
  });
  const refused = new WebSocket(`ws://127.0.0.1:${gw.port}/voice/stream`);
  refused.on('error', () => {});
  const [, response] = await once(refused, 'unexpected-response') as [unknown, IncomingMessage];
  t.equal(response.statusCode, 503);
  t.ok(response.headers['retry-after'], 'with Retry-After');
  refused.terminate();
  t.same(upstream.connections, [], 'the upstream saw no upgrade');

  const voice = await beatingProcess(t);
  t.equal(await voice.beat(`${gw.httpUrl}/heartbeat`, 'voice'), 200);
  const open = new WebSocket(`ws://127.0.0.1:${gw.port}/voice/stream`);
  t.teardown(() => open.terminate());
  await once(open, 'open');
  open.send('hi');
  const [echo] = await once(open, 'message') as [Buffer];
  t.equal(echo.toString(), 'echo:hi', 'proxied once an instance beats');
});
