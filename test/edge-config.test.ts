import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildApp } from '../app.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { isLoopbackHost } from '../src/edge/bind-check.js';
import { loadEdgeConfig, parseEdgeConfig, sha256Hex } from '../src/edge/edge-config.js';
import { parseJsonWithLocations } from '../src/edge/json-source.js';
import { edgeConfig, tokenSpec } from './helpers/edge.js';
import { serverEntry } from './helpers/process.js';
import { startRedis } from './helpers/redis.js';
import { until } from './helpers/test-socket.js';

const dir = mkdtempSync(join(tmpdir(), 'brainstem-edge-config-'));
mkdirSync(join(dir, 'frontends', 'overlay'), { recursive: true });
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** Writes a config file and returns its path. */
function configFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** The error message parseEdgeConfig gives for `text`. */
function problemsOf(text: string): string {
  try {
    parseEdgeConfig(text, 'brainstem.config.json', dir);
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error('the config was accepted');
}

const TTS_TOKEN = 'a-long-random-tts-token-0123456789';

t.test('the example of the issue loads, with defaults filled in', async (t) => {
  const path = configFile('brainstem.config.json', JSON.stringify({
    proxy: [{ prefix: '/llm', upstream: 'http://127.0.0.1:5003', websocket: true, auth: true, rewritePrefix: '' }],
    static: [{ prefix: '/overlay', root: './frontends/overlay' }],
    tokens: [
      { name: 'tts', sha256: sha256Hex(TTS_TOKEN).toUpperCase(), publish: ['tts.>', 'heartbeat.ping'], subscribe: ['agent.reply'], queues: ['generate.audio'], admin: false },
      { name: 'dashboard', token: 'a-clear-dashboard-token-0123', admin: true },
    ],
    cors: { origins: ['http://localhost:5173'] },
  }, null, 2));
  const edge = loadEdgeConfig(path);
  t.same(edge.proxy, [{ prefix: '/llm', upstream: 'http://127.0.0.1:5003', websocket: true, auth: true, rewritePrefix: '' }]);
  t.same(edge.static, [{ prefix: '/overlay', root: join(dir, 'frontends', 'overlay'), csp: true }], 'roots resolve from the file\'s folder');
  t.equal(edge.tokens[0]?.sha256, sha256Hex(TTS_TOKEN), 'digests are kept lowercase');
  t.equal(edge.tokens[1]?.sha256, sha256Hex('a-clear-dashboard-token-0123'), 'a clear token is kept only as its digest');
  t.same(edge.tokens[1]?.publish, []);
  t.same(edge.corsOrigins, ['http://localhost:5173']);
  t.equal(edge.source, path);

  const minimal = parseEdgeConfig('{"proxy":[{"prefix":"/a","upstream":"https://x.example/base"}]}', 'f', dir);
  t.same(minimal.proxy[0], { prefix: '/a', upstream: 'https://x.example/base', websocket: false, auth: true, rewritePrefix: '' }, 'auth is on unless turned off');
  const gated = parseEdgeConfig('{"proxy":[{"prefix":"/tts","upstream":"http://127.0.0.1:5002","service":"tts"}]}', 'f', dir);
  t.equal(gated.proxy[0]?.service, 'tts', 'a route may name the service behind it');
  t.same(loadEdgeConfig(null).tokens, [], 'no file: nothing configured');
});

t.test('a mistake is refused with the field and the line', async (t) => {
  const upstreamNumber = `{
  "proxy": [
    {
      "prefix": "/llm",
      "upstream": 5003
    }
  ]
}`;
  t.equal(problemsOf(upstreamNumber), 'brainstem.config.json:5: proxy[0].upstream: must be string');

  t.equal(problemsOf(`{
  "proxy": [{ "prefix": "/llm", "upstream": "http://127.0.0.1:5003",
              "websockets": true }]
}`), 'brainstem.config.json:3: proxy[0].websockets: unknown field', 'a misspelt field is named, not ignored');

  t.equal(problemsOf(`{
  "tokens": [
    { "name": "tts",
      "token": "a-long-random-tts-token-0123456789",
      "publish": ["tts.>",
                  "agent..reply"] }
  ]
}`), 'brainstem.config.json:6: tokens[0].publish[1]: "agent..reply" is not a topic pattern (segments separated by ".", "*" for one segment, ">" last for the rest)');

  t.equal(problemsOf('{\n  "static": [\n    { "root": "./frontends/overlay" }\n  ]\n}'), 'brainstem.config.json:3: static[0].prefix: is required');
  t.equal(problemsOf('{\n  "tokens": [\n    { "name": "x", "sha256": "abc" }\n  ]\n}'), 'brainstem.config.json:3: tokens[0].sha256: expected 64 hex digits (the SHA-256 of the token)');
  t.equal(problemsOf('{"tokens": [{"name": "x"}]}'), 'brainstem.config.json:1: tokens[0]: give exactly one of "sha256" (preferred) or "token"');
  t.equal(problemsOf('{"tokens": [{"name": "x", "token": "short"}]}'), 'brainstem.config.json:1: tokens[0].token: too short: use at least 16 characters (e.g. openssl rand -hex 32)');
  t.equal(problemsOf('{"proxy": [{"prefix": "/bus", "upstream": "http://127.0.0.1:1"}]}'), 'brainstem.config.json:1: proxy[0].prefix: "/bus" is served by the gateway itself');
  t.equal(problemsOf('{"proxy": [{"prefix": "/", "upstream": "http://127.0.0.1:1", "websocket": true}]}'), 'brainstem.config.json:1: proxy[0].prefix: the root is the dashboard\'s; mount under a path such as "/app"', 'a proxy at / would claim every upgrade, /bus included');
  t.equal(problemsOf('{"proxy": [{"prefix": "/llm/", "upstream": "http://127.0.0.1:1"}]}'), 'brainstem.config.json:1: proxy[0].prefix: expected a path like "/llm" (starts with "/", no trailing "/", no wildcards or parameters)');
  t.equal(problemsOf('{"proxy": [{"prefix": "/a", "upstream": "127.0.0.1:5003"}]}'), 'brainstem.config.json:1: proxy[0].upstream: expected an http:// or https:// URL');
  t.equal(problemsOf('{"proxy": [{"prefix": "/a", "upstream": "http://127.0.0.1:1", "service": " "}]}'), 'brainstem.config.json:1: proxy[0].service: expected the name its instances beat with (1 to 200 UTF-8 bytes, no control characters)');
  t.equal(problemsOf('{"proxy": [{"prefix": "/a", "upstream": "http://127.0.0.1:1", "service": 5}]}'), 'brainstem.config.json:1: proxy[0].service: must be string');
  t.match(problemsOf('{"static": [{"prefix": "/a", "root": "./nowhere"}]}'), /^brainstem\.config\.json:1: static\[0\]\.root: no such directory: .*nowhere$/);
  t.equal(problemsOf('{"cors": {"origins": ["http://localhost:5173/"]}}'), 'brainstem.config.json:1: cors.origins[0]: expected an origin such as "http://localhost:5173" (scheme, host, port; no path or trailing "/")');

  const two = problemsOf(`{
  "proxy": [{ "prefix": "/a", "upstream": "http://127.0.0.1:1" }],
  "static": [{ "prefix": "/a", "root": "./frontends/overlay" }],
  "tokens": [{ "name": "t", "token": "0123456789abcdefgh" }, { "name": "t", "token": "0123456789abcdefgh" }]
}`);
  t.same(two.split('\n'), [
    'brainstem.config.json:3: static[0].prefix: "/a" is already used by proxy[0]',
    'brainstem.config.json:4: tokens[1].name: "t" is used by another token',
    'brainstem.config.json:4: tokens[1]: the same token as another entry',
  ], 'every problem is listed, one per line');

  t.equal(problemsOf('{\n  "proxy": [\n    { "prefix": "/a", }\n  ]\n}'), 'brainstem.config.json:3:23: not valid JSON: expected a "quoted" field name, found "}"');
  t.equal(problemsOf('[]'), 'brainstem.config.json:1: (top level): must be object');
  t.throws(() => loadEdgeConfig(join(dir, 'missing.json')), /^BRAINSTEM_CONFIG=".*missing\.json": cannot read the config file \(ENOENT\)$/);
});

t.test('the JSON reader keeps values intact and refuses prototype tricks', async (t) => {
  const text = '{"a": [1, -2.5e3, true, null, "x\\"y\\u00e9"], "b": {}, "__proto__": {"admin": true}}';
  const { value, locate } = parseJsonWithLocations(text);
  t.same(value, JSON.parse(text));
  t.equal(({} as Record<string, unknown>).admin, undefined);
  t.equal(Object.getPrototypeOf(value), Object.prototype, '__proto__ is an ordinary key');
  t.same(locate('/a/4'), { line: 1, column: 31 }, 'where the string starts');
  t.same(locate('/a/9'), { line: 1, column: 7 }, 'a missing element points at its parent');
});

t.test('BRAINSTEM_CONFIG and BRAINSTEM_INSECURE are settings', async (t) => {
  t.equal(loadConfig({}).configPath, null);
  t.equal(loadConfig({}).insecure, false);
  t.equal(loadConfig({ BRAINSTEM_CONFIG: '/etc/brainstem.json' }).configPath, '/etc/brainstem.json');
  t.equal(loadConfig({ BRAINSTEM_INSECURE: '1' }).insecure, true);
  t.throws(() => loadConfig({ BRAINSTEM_INSECURE: 'maybe' }), /BRAINSTEM_INSECURE="maybe"/);
});

t.test('loopback addresses', async (t) => {
  for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) t.ok(isLoopbackHost(host), host);
  for (const host of ['0.0.0.0', '::', '192.168.1.10', 'example.com', '10.0.0.1']) t.notOk(isLoopbackHost(host), host);
});

t.test('secure by default: no tokens, no binding beyond loopback unless insecure', async (t) => {
  await t.rejects(buildApp({ logger: false, host: '0.0.0.0' }), new ConfigError(
    'HOST="0.0.0.0": refusing to listen beyond loopback with no tokens configured, since anyone on the network could then publish, subscribe and drain queues. '
    + 'Add tokens to the config file (BRAINSTEM_CONFIG), or set BRAINSTEM_INSECURE=1 to accept that.',
  ));
  const redis = await startRedis(t);
  const insecure = await buildApp({ logger: false, host: '0.0.0.0', insecure: true, redisUrl: redis.url });
  await insecure.close();
  const withTokens = await buildApp({ logger: false, host: '0.0.0.0', redisUrl: redis.url, edge: edgeConfig({ tokens: [tokenSpec('a', 'a-long-random-token-0123456789')] }) });
  await withTokens.close();
  t.pass('with tokens, or with insecure set, it builds');
});

t.test('the server process: refuses a bad file or an unsafe bind with one message; binds loopback by default', async (t) => {
  const redis = await startRedis(t);
  const env = { ...process.env, PORT: '0', REDIS_URL: redis.url, LOG_LEVEL: 'info', BRAINSTEM_CONFIG: undefined, HOST: undefined, BRAINSTEM_INSECURE: undefined };

  const badFile = configFile('bad.json', '{\n  "tokens": [\n    { "name": "tts", "token": "a-long-random-tts-token-0123456789", "admin": "yes" }\n  ]\n}\n');
  const bad = spawnSync(process.execPath, [serverEntry], { env: { ...env, BRAINSTEM_CONFIG: badFile }, encoding: 'utf8', timeout: 20_000 });
  t.equal(bad.status, 1);
  t.equal(bad.stderr.trim(), `brainstem: ${badFile}:3: tokens[0].admin: must be boolean`);

  const open = spawnSync(process.execPath, [serverEntry], { env: { ...env, HOST: '0.0.0.0' }, encoding: 'utf8', timeout: 20_000 });
  t.equal(open.status, 1);
  t.match(open.stderr, /^brainstem: HOST="0\.0\.0\.0": refusing to listen beyond loopback with no tokens configured/);

  const server = spawn(process.execPath, [serverEntry], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { server.kill('SIGKILL'); });
  const listening = await new Promise<string>((resolve, reject) => {
    let out = '';
    server.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /Server listening at (\S+?)"/.exec(out);
      if (match) resolve(match[1] as string);
    });
    server.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
  t.match(listening, /^http:\/\/127\.0\.0\.1:\d+$/, 'with nothing set, it listens on loopback only');

  let logged = '';
  server.stdout.on('data', (chunk: Buffer) => { logged += chunk.toString(); });
  t.equal((await fetch(`${listening}/health?token=never-log-this-value`)).status, 200);
  await until(() => logged.includes('/health?token='), 5000, 'the request in the log');
  t.match(logged, /"url":"\/health\?token=\*\*\*"/, 'requests are logged with the token masked');
  t.notMatch(logged, /never-log-this-value/);
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGTERM');
  t.equal(await exited, 0, 'and stops cleanly');
});
