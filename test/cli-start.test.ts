import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { freePort } from './helpers/ports.js';
import { until } from './helpers/test-socket.js';

const cli = fileURLToPath(new URL('../dist/src/cli/brainstem.js', import.meta.url));

t.test('brainstem start runs the gateway until SIGTERM', async (t) => {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'brainstem-cli-start-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const gateway = spawn(process.execPath, [cli, 'start', '--port', String(port)], {
    env: { ...process.env, DATA_DIR: dataDir, LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  });
  const exited = once(gateway, 'exit') as Promise<[number | null]>;
  t.teardown(() => { gateway.kill('SIGKILL'); });
  await until(async () => {
    try {
      return (await fetch(`http://127.0.0.1:${port}/health`)).status === 200;
    } catch {
      return false;
    }
  }, 45_000);
  const pubCode = await new Promise<number | null>((resolve) => {
    execFile(process.execPath, [cli, 'pub', 'a.b', '1'], { env: { ...process.env, BRAINSTEM_URL: `http://127.0.0.1:${port}` } },
      (err) => resolve(err ? (err.code as number) : 0));
  });
  t.equal(pubCode, 0, 'BRAINSTEM_URL points the commands at it');
  gateway.kill('SIGTERM');
  const [code] = await exited;
  t.equal(code, 0, 'stopped cleanly');
});
