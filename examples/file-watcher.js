// The seed's sensory input: watch a folder and publish `fs.change` for each
// file that changes, so that reasoning happens elsewhere.
//   WATCH_DIR=./src BRAINSTEM_URL=ws://127.0.0.1:8080/bus node examples/file-watcher.js
import { watch } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { startService } from 'brainstem/client';

const id = process.env.name ?? 'file-watcher'; // PM2 sets `name` per app
const root = resolve(process.env.WATCH_DIR ?? '.');
const IGNORED = /(^|\/)(node_modules|\.git|dist|var)(\/|$)/;
// Editors save in several steps (truncate, write, rename): report a file once it settles.
const SETTLE_MS = 100;

const broker = await startService({ id });
const settling = new Map();

async function report(file) {
  const path = join(root, file);
  let change;
  try {
    const info = await stat(path);
    if (!info.isFile()) return;
    change = { kind: 'modified', size: info.size, mtime: info.mtime.toISOString() };
  } catch {
    change = { kind: 'deleted' };
  }
  try {
    await broker.publish('fs.change', { root, file, path, ...change });
  } catch (err) {
    console.error(`[${id}] could not publish the change of ${file}: ${err.message}`);
  }
}

const watcher = watch(root, { recursive: true }, (_eventType, file) => {
  if (!file || IGNORED.test(file)) return;
  clearTimeout(settling.get(file));
  settling.set(file, setTimeout(() => {
    settling.delete(file);
    void report(file);
  }, SETTLE_MS));
});
broker.on('closed', () => watcher.close());
console.log(`[${id}] watching ${root}`);
