import t from 'tap';
import { LiveServices } from '../src/heartbeat/live-services.js';
import { beatingProcess } from './helpers/beating-process.js';
import { brainstem } from './helpers/cli.js';
import { startGateway } from './helpers/gateway.js';
import { TestSocket } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;

t.test('GET /services: each service with its instances and the bus connections that carry its name', async (t) => {
  const gw = await startGateway(t);
  const stt = await beatingProcess(t);
  t.equal(await stt.beat(`${gw.httpUrl}/heartbeat`, 'stt'), 200);
  const sttBus = await TestSocket.open(`${gw.busUrl}?name=stt`);
  t.teardown(() => sttBus.close());
  await sttBus.call({ action: 'subscribe', topic: 'stt.command.>' });
  const viewer = await TestSocket.open(`${gw.busUrl}?name=viewer`);
  t.teardown(() => viewer.close());
  const anonymous = await TestSocket.open(gw.busUrl);
  t.teardown(() => anonymous.close());

  const res = await fetch(`${gw.httpUrl}/services`);
  t.equal(res.status, 200);
  const { services } = await res.json() as { services: Frame[] };
  t.same(services.map((s) => s.name), ['stt', 'viewer'], 'one entry per name, sorted; a connection without a name is no service');
  const [sttView, viewerView] = services as [Frame, Frame];
  t.match(sttView, {
    name: 'stt',
    status: 'alive',
    instances: [{ pid: stt.pid, status: 'alive', cpu: Number, memory: Number, lastBeat: Number }],
    connections: [{ clientId: String, pid: null, subscriptions: ['stt.command.>'], pulls: [], tasks: [] }],
    routes: [],
  });
  t.ok(((sttView.instances as Frame[])[0]?.memory as number) > 0, "the instance's real memory");
  t.same(viewerView, { name: 'viewer', status: 'unknown', instances: [], connections: [(viewerView.connections as Frame[])[0]], routes: [] },
    'a name known only from a connection: unknown');

  const cli = await brainstem(['services', '--url', gw.busUrl]);
  t.equal(cli.code, 0, cli.stderr);
  t.same((JSON.parse(cli.stdout) as { services: Frame[] }).services.map((s) => s.name), ['stt', 'viewer'], 'brainstem services prints the same');
});

t.test('service.up on the first live instance of a name, service.down once the last one is gone', async (t) => {
  // Time for a cold process's first beat on a loaded machine to land before the first instance goes stale.
  const gw = await startGateway(t, { heartbeatTimeoutMs: 1500, heartbeatCheckIntervalMs: 100, heartbeatStop: false });
  const sub = await TestSocket.open(`${gw.busUrl}?name=watcher`);
  t.teardown(() => sub.close());
  await sub.call({ action: 'subscribe', topic: 'service.*' });
  await sub.call({ action: 'subscribe', topic: 'heartbeat.down' });
  const url = `${gw.httpUrl}/heartbeat`;
  const first = await beatingProcess(t);
  const second = await beatingProcess(t);

  t.equal(await first.beat(url, 'tts'), 200);
  t.match((await sub.event('service.up')).event, { type: 'service.up', source: 'heartbeat', payload: { name: 'tts' } },
    'the first instance brings the service up');
  // The second keeps beating while the first goes quiet.
  t.equal(await second.beat(url, 'tts'), 200);
  let beating = true;
  const beats = (async () => {
    while (beating) {
      await second.beat(url, 'tts');
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const firstDown = (await sub.event('heartbeat.down', 5000)).event as Frame;
  t.match(firstDown.payload, { pid: first.pid, name: 'tts' });
  beating = false;
  await beats;
  const secondDown = (await sub.event('heartbeat.down', 5000)).event as Frame;
  t.match(secondDown.payload, { pid: second.pid, name: 'tts' });
  // The first service.down to arrive: had one been published while the second was alive, it would be this one.
  const down = (await sub.event('service.down', 5000)).event as Frame;
  t.match(down, { payload: { name: 'tts' } });
  t.ok(Date.parse(down.timestamp as string) >= Date.parse(secondDown.timestamp as string), 'down only once the last instance is');
  t.same(sub.received.filter((f) => 'event' in f), [], 'nothing else: the second beat and the second instance published no service.up');

  t.equal(await second.beat(url, 'tts'), 200);
  t.match((await sub.event('service.up')).event, { payload: { name: 'tts' } }, 'up again on its next beat');
});

t.test('LiveServices: up with the first live pid of a name, down with its last; a pid changing names moves', async (t) => {
  const live = new LiveServices();
  t.same(live.alive(10, 'tts'), [{ type: 'service.up', name: 'tts' }]);
  t.same(live.alive(10, 'tts'), [], 'the same instance beating again');
  t.same(live.alive(11, 'tts'), [], 'a second instance');
  t.same(live.gone(10), []);
  t.same(live.gone(10), [], 'gone twice is gone once');
  t.same(live.alive(11, 'stt'), [{ type: 'service.down', name: 'tts' }, { type: 'service.up', name: 'stt' }],
    "a pid reused under another name: its old name's last instance left");
  t.same(live.gone(11), [{ type: 'service.down', name: 'stt' }]);
  t.same(live.gone(99), [], 'a pid never heard');
});
