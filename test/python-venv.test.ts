import { execFile } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { TestSocket } from './helpers/test-socket.js';
import { DEBIAN_VENV_PYTHON, PythonProcess, pythonVenvs, SYSTEM_PYTHON, VENV_PYTHON } from './python/python-process.js';

const run = promisify(execFile);
const packageDir = fileURLToPath(new URL('../clients/python', import.meta.url));
const hypothesisDir = fileURLToPath(new URL('../var/hypothesis', import.meta.url));

const interpreters = [
  { name: 'pip install (current websockets)', python: VENV_PYTHON },
  { name: "Debian's python3-websockets", python: DEBIAN_VENV_PYTHON },
];

async function pythonSays(python: string, code: string): Promise<string> {
  const { stdout } = await run(python, ['-c', code], { cwd: packageDir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PYTHONPATH: `${packageDir}/src` } });
  return stdout.trim();
}

const versions = await pythonVenvs();
t.comment(versions);

t.test('pip install ./clients/python resolves the current websockets; the Debian venv keeps the system one', async (t) => {
  const current = await pythonSays(VENV_PYTHON, 'import websockets; print(websockets.__version__)');
  t.ok(Number(current.split('.')[0]) >= 14, `websockets ${current} has the new asyncio client`);
  t.match(
    await pythonSays(VENV_PYTHON, 'from importlib.metadata import requires; print(requires("brainstem-client"))'),
    /websockets ?>=10\.4/,
    'installed from the package, whose dependency brought it',
  );
  t.equal(await pythonSays(VENV_PYTHON, 'from brainstem.websocket import describe; print(describe())'), `websockets ${current} (asyncio client)`);

  const system = await pythonSays(SYSTEM_PYTHON, 'import websockets; print(websockets.__version__)');
  t.equal(await pythonSays(DEBIAN_VENV_PYTHON, 'import websockets; print(websockets.__version__)'), system, 'the same websockets as /usr/bin/python3');
  t.equal(await pythonSays(DEBIAN_VENV_PYTHON, 'from brainstem.websocket import describe; print(describe())'), `websockets ${system} (legacy client)`);
});

for (const { name, python } of interpreters) {
  t.test(`pytest passes the package's unit and property tests with ${name}`, async (t) => {
    const { stdout } = await run(python, ['-m', 'pytest', '-q', '-p', 'no:cacheprovider'], {
      cwd: packageDir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', PYTHONDONTWRITEBYTECODE: '1', HYPOTHESIS_STORAGE_DIRECTORY: hypothesisDir },
      maxBuffer: 1 << 22,
    });
    const summary = stdout.trim().split('\n').at(-1) ?? '';
    t.comment(summary);
    t.match(summary, /^\d+ passed/, 'every test passed');
    t.notMatch(summary, /failed|error|skipped/);
  });

  t.test(`with ${name}, an HTTP(S) proxy in the environment does not catch the connection to the gateway`, async (t) => {
    const proxied: Socket[] = [];
    const proxy = createServer((socket) => proxied.push(socket));
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    t.teardown(() => {
      for (const socket of proxied) socket.destroy();
      proxy.close();
    });
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;

    const gw = await startGateway(t);
    const ts = await TestSocket.open(gw.busUrl);
    t.teardown(() => ts.close());
    await ts.call({ action: 'subscribe', topic: 'proxy.ok' });
    const script = [
      'import asyncio, sys, brainstem',
      'async def main():',
      '    client = brainstem.BrokerClient(sys.argv[1], "behind-proxy", open_timeout=5)',
      '    await client.connect()',
      '    print(await client.publish("proxy.ok", {}))',
      '    await client.close()',
      'asyncio.run(main())',
    ].join('\n');
    const env = { HTTP_PROXY: proxyUrl, HTTPS_PROXY: proxyUrl, ALL_PROXY: proxyUrl, http_proxy: proxyUrl, https_proxy: proxyUrl, all_proxy: proxyUrl };
    const py = PythonProcess.start(t, '-c', [script, gw.busUrl], { python, env });
    t.equal((await py.exited).code, 0, py.stderr);
    await ts.event('proxy.ok');
    t.equal(proxied.length, 0, 'nothing went to the proxy');
  });
}
