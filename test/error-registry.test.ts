import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { Type } from 'typebox';
import { buildApp } from '../app.js';
import { BusError } from '../src/bus/protocol.js';
import { CLIENT_ERROR_CODES, ERROR_CODES, type ErrorCode } from '../src/protocol/error-codes.js';
import { startRedis } from './helpers/redis.js';

// One vocabulary of errors: the registry (src/protocol/error-codes.ts) is
// what the gateway sends, the one error handler answers with it, the
// clients name only its codes or their own, the protocol doc lists it.
const root = fileURLToPath(new URL('..', import.meta.url));
const gatewayCodes = new Set(Object.keys(ERROR_CODES));
const clientCodes = new Set(Object.keys(CLIENT_ERROR_CODES));

function filesUnder(dir: string, extension: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(extension))
    .map((entry) => join(entry.parentPath, entry.name));
}

/** The gateway's own sources: everything but the clients it serves (the TypeScript client, the dashboard). */
function gatewayFiles(): string[] {
  const clients = [join(root, 'src/client/'), join(root, 'src/dashboard/')];
  return [
    ...filesUnder('src', '.ts').filter((file) => !clients.some((dir) => file.startsWith(dir))),
    ...filesUnder('plugins', '.ts'),
    ...filesUnder('routes', '.ts'),
    join(root, 'app.ts'),
    join(root, 'server.ts'),
  ];
}

/** `file:line: text` of each line matching `pattern`. */
function linesMatching(files: string[], pattern: RegExp): string[] {
  const found: string[] = [];
  for (const file of files) {
    readFileSync(file, 'utf8').split('\n').forEach((line, index) => {
      if (pattern.test(line)) found.push(`${relative(root, file)}:${index + 1}: ${line.trim()}`);
    });
  }
  return found;
}

/** Every string literal that is a whole upper-case word of four letters or more: how both clients spell codes. */
function upperCaseLiterals(files: string[]): Map<string, string> {
  const literals = new Map<string, string>();
  for (const file of files) {
    for (const [, , word] of readFileSync(file, 'utf8').matchAll(/(['"])([A-Z][A-Z0-9_]{3,})\1/g)) {
      if (!literals.has(word!)) literals.set(word!, relative(root, file));
    }
  }
  return literals;
}

function checkClient(t: Test, files: string[], notCodes: Set<string>): void {
  const literals = upperCaseLiterals(files);
  const codes = new Set([...literals.keys()].filter((word) => !notCodes.has(word)));
  t.ok(codes.size > 8, 'the codes are found');
  for (const code of codes) {
    t.ok(gatewayCodes.has(code) || clientCodes.has(code), `${code} (${literals.get(code)}) is a code of the registry or a client's own`);
  }
}

t.test('the registry: statuses are errors, the clients\' own codes are apart', async (t) => {
  t.ok(gatewayCodes.size >= 20, `${gatewayCodes.size} codes`);
  for (const [code, entry] of Object.entries(ERROR_CODES)) {
    t.ok(entry.http >= 400 && entry.http < 600, `${code}: HTTP ${entry.http}`);
    t.ok(entry.meaning.length > 0, `${code} says what it means`);
    t.notOk(clientCodes.has(code), `${code} is not also a client code`);
  }
});

t.test('every code the gateway names is in the registry, and every code of the registry is sent', async (t) => {
  const files = gatewayFiles();
  const named = new Map<string, string>();
  for (const file of files) {
    const source = readFileSync(file, 'utf8');
    for (const [, code] of source.matchAll(/(?:new BusError\(|code: )'([A-Z_]+)'/g)) {
      if (!named.has(code!)) named.set(code!, relative(root, file));
    }
  }
  for (const [code, file] of named) t.ok(gatewayCodes.has(code), `${code} (${file}) is in the registry`);
  const literals = upperCaseLiterals(files);
  for (const code of gatewayCodes) t.ok(literals.has(code), `${code} is sent somewhere`);
});

t.test('routes and plugins throw: no try/catch in routes/, no error status chosen outside the error handler', async (t) => {
  t.same(linesMatching(filesUnder('routes', '.ts'), /\btry\s*\{/), [], 'no try { in routes/');
  const handler = join(root, 'routes/errors.ts');
  const others = gatewayFiles().filter((file) => file !== handler);
  // /health answers its report, not an error, with 503 when a dependency is down.
  const report = /reply\.code\(ok \? 200 : 503\)/;
  const statuses = linesMatching(others, /\.(?:code|status)\([^)]*\b[45]\d\d\b|writeHead\(\s*[45]\d\d/).filter((line) => !report.test(line));
  t.same(statuses, [], 'no 4xx/5xx status outside routes/errors.ts');
  t.same(linesMatching(others, /\.send\(\s*\{\s*error\b/), [], 'no error body sent outside routes/errors.ts');
});

t.test('the TypeScript client names only codes of the registry or its own', async (t) => {
  // Signal names, not codes.
  checkClient(t, filesUnder('src/client', '.ts'), new Set(['SIGINT', 'SIGTERM']));
});

t.test('the Python client names only codes of the registry or its own', async (t) => {
  // Environment variables, an exported name and an HTTP method, not codes.
  checkClient(t, filesUnder('clients/python/src/brainstem', '.py'), new Set(['BRAINSTEM_URL', 'BRAINSTEM_TOKEN', 'DEFAULT_URL', 'POST']));
});

t.test('every client code is raised by a client', async (t) => {
  const literals = upperCaseLiterals([...filesUnder('src/client', '.ts'), ...filesUnder('clients/python/src/brainstem', '.py')]);
  for (const code of clientCodes) t.ok(literals.has(code), `${code} is raised`);
});

t.test('docs/bus-protocol.md lists every code of the registry with its status and close code', async (t) => {
  const doc = readFileSync(join(root, 'docs/bus-protocol.md'), 'utf8');
  const start = doc.indexOf('\n## Error codes\n');
  t.ok(start >= 0, 'the section is there');
  const section = doc.slice(start + 1, doc.indexOf('\n## ', start + 1));
  const gatewayRows = new Map<string, { http: number; close: number | undefined }>();
  const clientRows = new Set<string>();
  for (const [, code, rest] of section.matchAll(/^\| `([A-Z_]+)` \|(.*)$/gm)) {
    const cells = rest!.split(' | ').map((cell) => cell.trim());
    if (/^\d{3}$/.test(cells[0]!)) gatewayRows.set(code!, { http: Number(cells[0]), close: cells[1] === '' ? undefined : Number(cells[1]) });
    else clientRows.add(code!);
  }
  t.same([...gatewayRows.keys()].sort(), [...gatewayCodes].sort(), 'the gateway\'s table has every code of the registry, and no other');
  for (const [code, row] of gatewayRows) {
    const entry = ERROR_CODES[code as ErrorCode];
    t.same(row, { http: entry.http, close: entry.close }, `${code}: HTTP and close code`);
  }
  t.same([...clientRows].sort(), [...clientCodes].sort(), 'the clients\' table has every client code');
});

t.test('the error handler answers each code with its status, headers and body', async (t) => {
  const redis = await startRedis(t);
  const dataDir = mkdtempSync(join(tmpdir(), 'brainstem-errors-'));
  const app = await buildApp({ logger: false, redisUrl: redis.url, dataDir });
  t.teardown(async () => {
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  app.get('/refused/:code', { schema: { params: Type.Object({ code: Type.String() }) } }, async (request) => {
    throw new BusError(request.params.code as ErrorCode, `refused with ${request.params.code}`);
  });
  app.get('/broken', async () => {
    throw new Error('a bug');
  });
  await app.ready();

  for (const [code, entry] of Object.entries(ERROR_CODES)) {
    const response = await app.inject({ method: 'GET', url: `/refused/${code}` });
    t.equal(response.statusCode, entry.http, `${code}: ${entry.http}`);
    t.same(response.json(), { error: `refused with ${code}`, code });
    for (const [name, value] of Object.entries(entry.headers ?? {})) t.equal(response.headers[name], value, `${code}: ${name}`);
  }
  const broken = await app.inject({ method: 'GET', url: '/broken' });
  t.equal(broken.statusCode, 500);
  t.same(broken.json(), { error: 'internal error', code: 'INTERNAL' }, 'a bug is INTERNAL, its message not shown');
});
