import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { brainstem, cli } from './helpers/cli.js';
import { freePort } from './helpers/ports.js';
import { untilHealthy } from './helpers/process.js';

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
  await untilHealthy(`http://127.0.0.1:${port}`);
  const pub = await brainstem(['pub', 'a.b', '1'], { env: { BRAINSTEM_URL: `http://127.0.0.1:${port}` } });
  t.equal(pub.code, 0, 'BRAINSTEM_URL points the commands at it');
  gateway.kill('SIGTERM');
  const [code] = await exited;
  t.equal(code, 0, 'stopped cleanly');
});
