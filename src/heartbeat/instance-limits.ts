import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** How many live instances each app name may have; names not listed are unlimited. */
export type InstanceLimits = ReadonlyMap<string, number>;

export interface LoadedLimits {
  path: string;
  limits: InstanceLimits;
  /** Why the file gave no limits, when it could not be read. */
  problem: string | null;
}

/**
 * The project's ecosystem.config.cjs. Code runs from sources (tests) and
 * from dist/ (the server), so the folder is found by walking up to
 * package.json rather than by a fixed `../`.
 */
export function defaultEcosystemPath(fromModuleUrl: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(fromModuleUrl));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) return resolve('ecosystem.config.cjs');
    dir = parent;
  }
  return join(dir, 'ecosystem.config.cjs');
}

/**
 * PM2's `instances`: a count, or `max` / 0 for one per core and -N for
 * all cores but N. Missing means 1, as in the original service.
 */
export function instancesOf(value: unknown, cores = availableParallelism()): number {
  if (value === undefined || value === null) return 1;
  if (value === 'max') return cores;
  const count = typeof value === 'string' ? Number(value) : value;
  if (typeof count !== 'number' || !Number.isInteger(count)) return 1;
  if (count > 0) return count;
  return Math.max(1, cores + count);
}

/**
 * Reads `apps[].name` and `apps[].instances` from a PM2 ecosystem file with
 * require, as the original did (so a CommonJS file with logic in it works).
 * A file that cannot be loaded gives no limits and says why.
 */
export function loadInstanceLimits(path: string): LoadedLimits {
  const absolute = resolve(path);
  try {
    const require = createRequire(import.meta.url);
    // A fresh read each time the organ starts, not a module cached earlier.
    delete require.cache[require.resolve(absolute)];
    const ecosystem = require(absolute) as { apps?: unknown };
    const limits = new Map<string, number>();
    const apps = Array.isArray(ecosystem?.apps) ? ecosystem.apps : [];
    for (const app of apps as { name?: unknown; instances?: unknown }[]) {
      if (typeof app?.name === 'string' && app.name !== '') limits.set(app.name, instancesOf(app.instances));
    }
    return { path: absolute, limits, problem: null };
  } catch (err) {
    return { path: absolute, limits: new Map(), problem: (err as Error).message.split('\n')[0] ?? 'unreadable' };
  }
}
