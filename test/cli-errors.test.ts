import t from 'tap';
import { BrokerClient } from '../src/client/index.js';
import { brainstem } from './helpers/cli.js';
import { startGateway } from './helpers/gateway.js';

t.test('bad input exits 1 with a one-line message', async (t) => {
  const gw = await startGateway(t);
  const url = ['--url', gw.busUrl];
  const [badPub, badEnqueue, badRequest, badTopic, unknown, badOption, missing, help, enqueueHelp] = await Promise.all([
    brainstem(['pub', 'a.b', '{"x":', ...url]),
    brainstem(['enqueue', 'q', '{nope}', ...url]),
    brainstem(['request', 'a.b', 'not json', ...url]),
    brainstem(['pub', 'a.*', '{}', ...url]),
    brainstem(['frobnicate']),
    brainstem(['pub', 'a.b', '--colour']),
    brainstem(['pub']),
    brainstem(['--help']),
    brainstem(['enqueue', '--help']),
  ]);
  for (const run of [badPub, badEnqueue, badRequest]) {
    t.equal(run.code, 1, 'bad JSON exits 1');
    t.equal(run.stdout, '');
    t.match(run.stderr, /^brainstem: invalid JSON for the (payload|task): [^\n]+\n$/);
  }
  t.equal(badTopic.code, 1);
  t.match(badTopic.stderr, /^brainstem: invalid topic/);
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /unknown command "frobnicate"/);
  t.equal(badOption.code, 1);
  t.match(badOption.stderr, /^brainstem: Unknown option '--colour'.*--help\)\n$/);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /Usage: brainstem pub TOPIC/);
  t.equal(help.code, 0);
  for (const command of ['start', 'pub', 'sub', 'request', 'enqueue', 'queues', 'heartbeats', '--url', '--token']) {
    t.ok(help.stdout.includes(command), `--help mentions ${command}`);
  }
  t.match(enqueueHelp.stdout, /^Usage: brainstem enqueue QUEUE/);
});

t.test('request prints the reply, and exits 1 when none comes in time', async (t) => {
  const gw = await startGateway(t);
  const responder = new BrokerClient({ url: gw.busUrl, id: 'adder' });
  t.teardown(() => responder.close());
  await responder.connect();
  await responder.respond('math.add', (event) => {
    const { a, b } = event.payload as { a: number; b: number };
    return a + b;
  });
  const answered = await brainstem(['request', 'math.add', '{"a":1,"b":2}', '--url', gw.busUrl]);
  t.equal(answered.code, 0, answered.stderr);
  t.match(JSON.parse(answered.stdout), { type: /^_inbox\./, payload: 3, source: 'adder' });

  const started = Date.now();
  const silent = await brainstem(['request', 'nobody.home', '{}', '--timeout', '300', '--url', gw.busUrl]);
  t.equal(silent.code, 1);
  t.match(silent.stderr, /^brainstem: no subscriber for nobody\.home: nobody can answer this request\n$/, 'NO_RESPONDERS: the gateway says so at once');
  t.ok(Date.now() - started < 5000);
});
