import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { startGateway } from './helpers/gateway.js';
import { TestSocket } from './helpers/test-socket.js';
import { PythonProcess, SYSTEM_PYTHON } from './python/python-process.js';

const run = promisify(execFile);
const packageDir = fileURLToPath(new URL('../clients/python', import.meta.url));
const pythonEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', PYTHONDONTWRITEBYTECODE: '1' };

t.test("the package's unit tests pass under /usr/bin/python3", async (t) => {
  const { stderr } = await run(SYSTEM_PYTHON, ['-m', 'unittest', '-v', 'test_units'], {
    cwd: join(packageDir, 'tests'),
    env: { ...pythonEnv, PYTHONPATH: join(packageDir, 'src') },
  });
  t.match(stderr, /\nOK\s*$/, 'unittest reports OK');
  t.match(stderr, /Ran [1-9]\d* tests/);
});

t.test('pip installs the package from its folder, typed, and the installed copy works', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'brainstem-pip-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  // Build from a copy: pip writes build files into the folder it builds.
  const source = join(work, 'source');
  cpSync(packageDir, source, { recursive: true, filter: (path) => !/(__pycache__|\.egg-info|\/build)$/.test(path) });
  const target = join(work, 'site');
  // No network here: build with the system's setuptools (python3-setuptools).
  await run(SYSTEM_PYTHON, ['-m', 'pip', 'install', '--quiet', '--no-build-isolation', '--no-deps', '--no-index', '--target', target, source], {
    env: pythonEnv,
  });
  t.ok(existsSync(join(target, 'brainstem', 'py.typed')), 'py.typed is installed (PEP 561)');
  t.ok(existsSync(join(target, 'brainstem', 'contract.json')), 'the client contract is installed with it');
  const distInfo = readdirSync(target).find((name) => /^brainstem_client-.*\.dist-info$/.test(name));
  t.ok(distInfo, 'installed as the brainstem-client distribution');
  const metadata = readFileSync(join(target, distInfo as string, 'METADATA'), 'utf8');
  t.match(metadata, /^Requires-Dist: websockets ?\(?>=10\.4\)?$/m, 'websockets is its only dependency');
  t.match(metadata, /^Requires-Python: >=3\.10$/m);

  const gw = await startGateway(t);
  const ts = await TestSocket.open(gw.busUrl);
  t.teardown(() => ts.close());
  await ts.call({ action: 'subscribe', topic: 'installed.>' });
  const script = [
    'import asyncio, sys, brainstem',
    'async def main():',
    '    client = brainstem.BrokerClient(sys.argv[1], "installed")',
    '    await client.connect()',
    '    print(await client.publish("installed.ok", {"file": brainstem.__file__}, confirm=True))',
    '    await client.close()',
    'asyncio.run(main())',
  ].join('\n');
  const py = PythonProcess.start(t, '-c', [script, gw.busUrl], { path: [target] });
  t.equal((await py.exited).code, 0, py.stderr);
  const event = (await ts.event('installed.ok')).event as { payload: { file: string } };
  t.ok(event.payload.file.startsWith(target), 'the installed copy, not the source tree, was imported');
});
