import t from 'tap';
import { BusError } from '../src/bus/protocol.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { parseTaskOptions } from '../src/queues/task-options.js';

t.test('queue settings: defaults, per-queue overrides, and a bad override named in one line', async (t) => {
  const defaults = loadConfig({});
  t.equal(defaults.queueAttempts, 5);
  t.equal(defaults.queueBackoffType, 'exponential');
  t.equal(defaults.queueBackoffMs, 1000);
  t.same(defaults.queueOverrides, {});

  const config = loadConfig({ QUEUE_OVERRIDES: '{"agent.think":{"attempts":3,"backoff":{"type":"fixed","delay":500}},"tts.speak":{"backoff":250}}' });
  t.same(config.queueOverrides, {
    'agent.think': { attempts: 3, backoff: { type: 'fixed', delay: 500 } },
    'tts.speak': { backoff: { type: 'fixed', delay: 250 } },
  });
  t.same(loadConfig({ QUEUE_OVERRIDES: ' ' }).queueOverrides, {});

  const bad: [string, RegExp][] = [
    ['not json', /^QUEUE_OVERRIDES="not json": expected JSON/],
    ['[1]', /expected a JSON object keyed by queue name/],
    ['{"a b":{}}', /"a b" is not a valid queue name/],
    ['{"q":3}', /q: expected \{"attempts"\?, "backoff"\?, "timeout"\?\}/],
    ['{"q":{"timeout":0}}', /q\.timeout must be a positive whole number of ms/],
    ['{"q":{"attempts":0}}', /q\.attempts must be a whole number from 1 to 1000/],
    ['{"q":{"backoff":{"type":"linear","delay":1}}}', /q\.backoff\.type must be "exponential" or "fixed"/],
    ['{"q":{"retries":2}}', /q: unknown key "retries"/],
  ];
  for (const [raw, message] of bad) {
    let error: unknown;
    try {
      loadConfig({ QUEUE_OVERRIDES: raw });
    } catch (err) {
      error = err;
    }
    t.ok(error instanceof ConfigError, `${raw}: refused at start`);
    t.match((error as Error | undefined)?.message, message);
  }
  t.throws(() => loadConfig({ QUEUE_BACKOFF_TYPE: 'linear' }), /QUEUE_BACKOFF_TYPE="linear": expected one of exponential, fixed/);
});

t.test('task options: what BullMQ stores, and refusals that name the field', async (t) => {
  t.same(parseTaskOptions(undefined), {});
  t.same(parseTaskOptions({ priority: 0, delay: 0 }), {}, 'zero means none');
  t.same(parseTaskOptions({ priority: 3, delay: 10, attempts: 2, backoff: 100, jobId: 'a-1', replyTo: 'x.y' }), {
    priority: 3, delay: 10, attempts: 2, backoff: { type: 'fixed', delay: 100 }, jobId: 'a-1', replyTo: 'x.y',
  });
  const refused = (opts: unknown) => {
    try {
      parseTaskOptions(opts);
    } catch (err) {
      return err instanceof BusError ? `${err.code}: ${err.message}` : String(err);
    }
    return 'accepted';
  };
  t.match(refused({ priority: 2 ** 21 }), /^INVALID_FRAME: opts\.priority/);
  t.match(refused({ delay: 1.5 }), /^INVALID_FRAME: opts\.delay/);
  t.match(refused({ backoff: { type: 'fixed', delay: -1 } }), /^INVALID_FRAME: opts\.backoff\.delay/);
  t.match(refused({ backoff: 'slow' }), /^INVALID_FRAME: opts\.backoff must be/);
  t.match(refused({ jobId: 'a:b' }), /^INVALID_FRAME: opts\.jobId/);
  t.match(refused({ jobId: 'x'.repeat(257) }), /^INVALID_FRAME: opts\.jobId/);
  t.match(refused([]), /^INVALID_FRAME: opts must be an object/);
  t.same(parseTaskOptions({ timeout: 300 }), { timeout: 300 });
  for (const timeout of [0, -1, 1.5, '300', 2 ** 31]) t.match(refused({ timeout }), /^INVALID_FRAME: opts\.timeout/, `timeout ${String(timeout)}`);
  t.same(loadConfig({ QUEUE_OVERRIDES: '{"render.video":{"timeout":60000}}' }).queueOverrides, { 'render.video': { timeout: 60000 } });
});
