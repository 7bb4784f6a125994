import { spawnSync } from 'node:child_process';
import t from 'tap';
import { ConfigError, loadConfig } from '../src/config.js';
import { serverEntry } from './helpers/process.js';

t.test('defaults', async (t) => {
  const config = loadConfig({});
  t.equal(config.port, 8080);
  t.equal(config.host, '127.0.0.1');
  t.equal(config.busMaxFrameBytes, 1024 * 1024);
  t.equal(config.busMaxBacklogBytes, 8 * 1024 * 1024);
  t.equal(config.redisUrl, null);
});

t.test('values are parsed and bad ones named', async (t) => {
  t.equal(loadConfig({ PORT: '9000' }).port, 9000);
  t.equal(loadConfig({ LOG_LEVEL: 'debug' }).logLevel, 'debug');
  t.throws(() => loadConfig({ PORT: 'eighty' }), new ConfigError('PORT="eighty": expected a whole number from 0 to 65535'));
  t.throws(() => loadConfig({ PORT: '70000' }), ConfigError);
  t.throws(() => loadConfig({ LOG_LEVEL: 'verbose' }), /LOG_LEVEL="verbose": expected one of fatal, error/);
  t.throws(() => loadConfig({ REDIS_URL: 'http://x' }), /REDIS_URL/);
});

t.test('the server stops on a bad value with one line and no stack', async (t) => {
  const run = spawnSync(process.execPath, [serverEntry], { env: { ...process.env, PORT: 'abc' }, encoding: 'utf8' });
  t.equal(run.status, 1);
  t.equal(run.stderr.trim(), 'brainstem: PORT="abc": expected a whole number from 0 to 65535');
});
