import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The folder holding package.json. Code runs both from sources (tests) and
 * from dist/ (the server), so a fixed `../` from the module would be wrong
 * in one of them.
 */
export function packageRoot(fromModuleUrl: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(fromModuleUrl));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
  return dir;
}
