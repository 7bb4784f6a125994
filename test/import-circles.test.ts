import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

// Every module a path visits comes once: an import circle (type-only
// imports included) is where data starts to flow both ways.
const root = fileURLToPath(new URL('..', import.meta.url));

function filesUnder(dir: string, extension: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(extension))
    .map((entry) => join(entry.parentPath, entry.name));
}

function typescriptImports(file: string): string[] {
  const source = readFileSync(file, 'utf8');
  const targets: string[] = [];
  for (const [, specifier] of source.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
    targets.push(resolve(dirname(file), specifier!.replace(/\.js$/, '.ts')));
  }
  return targets;
}

function pythonImports(file: string): string[] {
  const source = readFileSync(file, 'utf8');
  const targets: string[] = [];
  for (const [, dots, name, names] of source.matchAll(/^\s*from\s+(\.+)([\w.]*)\s+import\s+([\w, ]+)/gm)) {
    const base = resolve(dirname(file), ...Array<string>(dots!.length - 1).fill('..'));
    if (name) targets.push(join(base, ...name.split('.')) + '.py');
    else for (const each of names!.split(',')) targets.push(join(base, each.trim() + '.py'));
  }
  return targets;
}

/** The first circle found, as the modules it passes through, or null. */
function firstCircle(files: string[], importsOf: (file: string) => string[]): string[] | null {
  const known = new Set(files);
  const edges = new Map(files.map((file) => [file, importsOf(file).filter((target) => known.has(target))]));
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (file: string): string[] | null => {
    const at = path.indexOf(file);
    if (at >= 0) return path.slice(at);
    if (done.has(file)) return null;
    path.push(file);
    for (const target of edges.get(file)!) {
      const circle = visit(target);
      if (circle) return circle;
    }
    path.pop();
    done.add(file);
    return null;
  };
  for (const file of files) {
    const circle = visit(file);
    if (circle) return circle.map((each) => relative(root, each));
  }
  return null;
}

t.test('no import circle in src/', async (t) => {
  const files = filesUnder(join(root, 'src'), '.ts');
  t.ok(files.length > 50, 'the modules are found');
  t.same(firstCircle(files, typescriptImports), null);
});

t.test('no import circle in the Python client', async (t) => {
  const files = filesUnder(join(root, 'clients/python/src'), '.py');
  t.ok(files.length > 10, 'the modules are found');
  t.same(firstCircle(files, pythonImports), null);
});

t.test('the check finds a circle where there is one', async (t) => {
  const a = join(root, 'a.ts');
  const b = join(root, 'b.ts');
  const c = join(root, 'c.ts');
  const graph = new Map([[a, [b]], [b, [c]], [c, [a]]]);
  t.same(firstCircle([a, b, c], (file) => graph.get(file)!), ['a.ts', 'b.ts', 'c.ts']);
});
