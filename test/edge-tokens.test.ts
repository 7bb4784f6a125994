import t from 'tap';
import { describeRequirement, requirementFor, satisfies } from '../src/edge/access-policy.js';
import { headersWithoutToken, queryWithoutToken } from '../src/edge/gateway-credentials.js';
import { redactTokensInText } from '../src/redaction.js';
import { ANONYMOUS_PRINCIPAL, TokenPrincipal, TokenTable } from '../src/edge/token-table.js';
import { tokenSpec } from './helpers/edge.js';

t.test('TokenPrincipal: subscribe needs a covering pattern, publish and queue a matching one', async (t) => {
  const tts = new TokenPrincipal({ name: 'tts', admin: false, publish: ['tts.>', 'heartbeat.ping'], subscribe: ['agent.reply', 'fs.*'], queues: ['generate.*'] });
  t.ok(tts.may('subscribe', 'agent.reply'));
  t.ok(tts.may('subscribe', 'fs.change'));
  t.ok(tts.may('subscribe', 'fs.*'), 'a pattern covers itself');
  t.notOk(tts.may('subscribe', 'fs.>'), 'fs.> reaches deeper than fs.*');
  t.notOk(tts.may('subscribe', 'agent.*'), 'agent.* would include more than agent.reply');
  t.notOk(tts.may('subscribe', '>'));
  t.ok(tts.may('publish', 'tts.speak'));
  t.ok(tts.may('publish', 'tts.speak.done'));
  t.notOk(tts.may('publish', 'tts'), '> needs at least one more segment');
  t.notOk(tts.may('publish', 'heartbeat.pong'));
  t.ok(tts.may('queue', 'generate.audio'));
  t.notOk(tts.may('queue', 'generate.audio.hq'));
  t.notOk(tts.may('queue', 'tts.speak'), 'publish rights are not queue rights');
  t.equal(tts.admin, false);

  const ops = new TokenPrincipal({ name: 'ops', admin: true, publish: [], subscribe: [], queues: [] });
  t.ok(ops.may('subscribe', '>') && ops.may('publish', 'x') && ops.may('queue', 'y'), 'admin may do everything');
  t.notOk(ANONYMOUS_PRINCIPAL.may('subscribe', 'a') || ANONYMOUS_PRINCIPAL.admin, 'no token, no rights');
});

t.test('TokenTable: finds the entry by token, not by name; unknown is null', async (t) => {
  const table = new TokenTable([tokenSpec('a', 'token-of-a-0123456789'), tokenSpec('b', 'token-of-b-0123456789', { admin: true })]);
  t.equal(table.size, 2);
  t.equal(table.resolve('token-of-b-0123456789')?.name, 'b');
  t.equal(table.resolve('token-of-b-0123456789')?.admin, true);
  t.equal(table.resolve('token-of-a-0123456789')?.name, 'a');
  t.equal(table.resolve('b'), null);
  t.equal(table.resolve(''), null);
  t.equal(table.resolve('token-of-a-0123456789 '), null, 'no trimming, no prefix match');
});

t.test('access policy: which surface needs what', async (t) => {
  const kind = (method: string, url: string | undefined, params = {}) => requirementFor(method, url, params).kind;
  t.equal(kind('GET', '/bus'), 'token', 'the /bus WebSocket and its state');
  t.equal(kind('POST', '/bus/publish'), 'token', 'the route checks the publish right itself');
  t.equal(kind('DELETE', '/bus/connections/:id'), 'admin');
  t.equal(kind('GET', '/queues/:name'), 'token');
  t.equal(kind('POST', '/queues/:name/pause'), 'admin');
  t.equal(kind('POST', '/queues/:name/tasks/:id/retry'), 'admin');
  t.same(requirementFor('POST', '/queues/:name/tasks', { name: 'generate.audio' }), { kind: 'right', right: 'queue', subject: 'generate.audio' });
  t.equal(kind('POST', '/heartbeat'), 'token');
  t.equal(kind('POST', '/heartbeat/heartbeat'), 'token');
  t.equal(kind('GET', '/heartbeats'), 'token');
  t.equal(kind('GET', '/health'), 'open');
  t.equal(kind('GET', '/*'), 'open', 'the dashboard');
  t.equal(kind('GET', '/busy'), 'open', 'a path that only starts like /bus is not /bus');
  t.equal(kind('GET', undefined), 'open', 'not found');
  t.equal(requirementFor('GET', '/llm/*', {}, 'token').kind, 'token', 'a proxied route declares its own rule');
  t.equal(requirementFor('GET', '/bus', {}, 'open').kind, 'open');

  const tts = new TokenPrincipal({ name: 'tts', admin: false, publish: [], subscribe: [], queues: ['generate.audio'] });
  t.ok(satisfies(tts, { kind: 'right', right: 'queue', subject: 'generate.audio' }));
  t.notOk(satisfies(tts, { kind: 'right', right: 'queue', subject: 'other' }));
  t.notOk(satisfies(tts, { kind: 'admin' }));
  t.equal(describeRequirement({ kind: 'right', right: 'queue', subject: 'other' }), 'not allowed to use queue other', 'worded as on the bus');
  t.equal(describeRequirement({ kind: 'admin' }), 'this needs an admin token');
});

t.test('the gateway token never leaves for an upstream, nor lands in logs', async (t) => {
  t.equal(queryWithoutToken('/a?token=s3cret&q=1', 's3cret'), 'q=1');
  t.equal(queryWithoutToken('/a?token=theirs&q=1', 's3cret'), 'token=theirs&q=1', 'a token parameter that is not ours passes');
  t.equal(queryWithoutToken('/a?token=s3cret', null), 'token=s3cret', 'auth off: nothing is ours');
  t.equal(queryWithoutToken('/a', 's3cret'), '');
  t.same(headersWithoutToken({ authorization: 'Bearer s3cret', accept: '*/*' }, 's3cret'), { accept: '*/*' });
  t.same(headersWithoutToken({ authorization: 'Bearer theirs' }, 's3cret'), { authorization: 'Bearer theirs' });
  t.equal(redactTokensInText('/bus?name=x&token=s3cret&y=1'), '/bus?name=x&token=***&y=1');
  t.equal(redactTokensInText('/bus?token=s3cret'), '/bus?token=***');
});
