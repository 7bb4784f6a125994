import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { ruleProblems, withDefaults, type RetentionRule } from '../bus/history/retention-rules.js';
import { isValidPattern } from '../bus/topic.js';
import { MAX_SERVICE_NAME_BYTES, nameProblem } from '../protocol/names.js';
import { ConfigError } from '../config.js';
import { JsonSyntaxError, parseJsonWithLocations, type LocatedJson } from './json-source.js';

/**
 * The edge's file configuration (`brainstem.config.json`): proxy routes,
 * static frontends, tokens and CORS origins. Read once at start; a mistake
 * stops the start with the file, line and field it is in.
 */

const Patterns = Type.Array(Type.String());

const ProxyEntry = Type.Object({
  prefix: Type.String(),
  upstream: Type.String(),
  websocket: Type.Optional(Type.Boolean()),
  auth: Type.Optional(Type.Boolean()),
  rewritePrefix: Type.Optional(Type.String()),
  service: Type.Optional(Type.String()),
}, { additionalProperties: false });

const StaticEntry = Type.Object({
  prefix: Type.String(),
  root: Type.String(),
  csp: Type.Optional(Type.Boolean()),
}, { additionalProperties: false });

const TokenEntry = Type.Object({
  name: Type.String(),
  sha256: Type.Optional(Type.String()),
  token: Type.Optional(Type.String()),
  publish: Type.Optional(Patterns),
  subscribe: Type.Optional(Patterns),
  queues: Type.Optional(Patterns),
  admin: Type.Optional(Type.Boolean()),
}, { additionalProperties: false });

const HistoryEntry = Type.Object({
  topics: Type.String(),
  maxEvents: Type.Optional(Type.Integer()),
  maxAgeSeconds: Type.Optional(Type.Integer()),
}, { additionalProperties: false });

export const EdgeFileSchema = Type.Object({
  $schema: Type.Optional(Type.String()),
  proxy: Type.Optional(Type.Array(ProxyEntry)),
  static: Type.Optional(Type.Array(StaticEntry)),
  tokens: Type.Optional(Type.Array(TokenEntry)),
  cors: Type.Optional(Type.Object({ origins: Type.Array(Type.String()) }, { additionalProperties: false })),
  hosts: Type.Optional(Type.Array(Type.String())),
  history: Type.Optional(Type.Array(HistoryEntry)),
}, { additionalProperties: false });

export type EdgeFile = Static<typeof EdgeFileSchema>;

const checkEdgeFile = Compile(EdgeFileSchema);

export interface ProxyRoute {
  prefix: string;
  upstream: string;
  websocket: boolean;
  /** A known token is needed (when tokens are configured). Defaults to true. */
  auth: boolean;
  rewritePrefix: string;
  /** The heartbeat name of the service behind it: while no instance is alive, 503 SERVICE_DOWN. */
  service?: string;
}

export interface StaticRoute {
  prefix: string;
  /** Absolute directory; relative roots are resolved from the config file's folder. */
  root: string;
  /** Send a Content-Security-Policy (pages with inline scripts may turn it off). */
  csp: boolean;
}

export interface TokenSpec {
  name: string;
  /** Lowercase hex SHA-256 of the token; a clear `token` is hashed at load. */
  sha256: string;
  publish: string[];
  subscribe: string[];
  queues: string[];
  admin: boolean;
}

export interface EdgeConfig {
  /** The file it came from, or null when there is none. */
  source: string | null;
  proxy: ProxyRoute[];
  static: StaticRoute[];
  tokens: TokenSpec[];
  corsOrigins: string[];
  /** Names besides loopback a request's `Host` may give when no tokens are configured (lowercase). */
  hosts: string[];
  /** Retained topics (`"history"`), or null when the file does not say. */
  history: RetentionRule[] | null;
}

export const EMPTY_EDGE_CONFIG: EdgeConfig = Object.freeze({
  source: null,
  proxy: [],
  static: [],
  tokens: [],
  corsOrigins: [],
  hosts: [],
  history: null,
});

/** Paths the gateway serves itself; a proxy or frontend may not take them. */
const RESERVED_PREFIXES = ['/bus', '/queues', '/heartbeat', '/heartbeats', '/health'];
const PREFIX_FORMAT = /^(\/[A-Za-z0-9._~!$&'()+,;=@-]+)+$/;
const SHA256_FORMAT = /^[0-9a-fA-F]{64}$/;

interface Problem {
  pointer: string;
  message: string;
}

/** `/proxy/0/upstream` → `proxy[0].upstream`. */
export function fieldName(pointer: string): string {
  let name = '';
  for (const raw of pointer.split('/').slice(1)) {
    const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    name += /^\d+$/.test(segment) ? `[${segment}]` : name === '' ? segment : `.${segment}`;
  }
  return name === '' ? '(top level)' : name;
}

function schemaProblems(value: unknown): Problem[] {
  const problems: Problem[] = [];
  for (const error of checkEdgeFile.Errors(value)) {
    // An unknown field shows up twice: as a `false` schema at the field and
    // as `additionalProperties` at its object. Report it once, at the field.
    if (error.keyword === 'additionalProperties') continue;
    if (error.keyword === 'boolean') {
      problems.push({ pointer: error.instancePath, message: 'unknown field' });
    } else if (error.keyword === 'required') {
      const missing = (error.params as { requiredProperties?: string[] }).requiredProperties ?? [];
      for (const name of missing) {
        problems.push({ pointer: `${error.instancePath}/${name}`, message: 'is required' });
      }
    } else {
      problems.push({ pointer: error.instancePath, message: error.message });
    }
  }
  return problems;
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function prefixProblem(prefix: string, taken: Map<string, string>, here: string): string | null {
  if (prefix === '/' || prefix === '') return 'the root is the dashboard\'s; mount under a path such as "/app"';
  if (!PREFIX_FORMAT.test(prefix)) return 'expected a path like "/llm" (starts with "/", no trailing "/", no wildcards or parameters)';
  for (const reserved of RESERVED_PREFIXES) {
    if (prefix === reserved || prefix.startsWith(`${reserved}/`)) return `"${reserved}" is served by the gateway itself`;
  }
  const previous = taken.get(prefix);
  if (previous !== undefined) return `"${prefix}" is already used by ${previous}`;
  taken.set(prefix, here);
  return null;
}

function meaningProblems(file: EdgeFile, baseDir: string): Problem[] {
  const problems: Problem[] = [];
  const taken = new Map<string, string>();
  file.proxy?.forEach((entry, index) => {
    const at = `/proxy/${index}`;
    const prefix = prefixProblem(entry.prefix, taken, fieldName(at));
    if (prefix) problems.push({ pointer: `${at}/prefix`, message: prefix });
    if (!isHttpUrl(entry.upstream)) {
      problems.push({ pointer: `${at}/upstream`, message: 'expected an http:// or https:// URL' });
    }
    if (entry.rewritePrefix !== undefined && entry.rewritePrefix !== '' && !entry.rewritePrefix.startsWith('/')) {
      problems.push({ pointer: `${at}/rewritePrefix`, message: 'expected "" or a path starting with "/"' });
    }
    if (entry.service !== undefined && (entry.service.trim() === '' || nameProblem(entry.service, MAX_SERVICE_NAME_BYTES) !== null)) {
      problems.push({ pointer: `${at}/service`, message: `expected the name its instances beat with (1 to ${MAX_SERVICE_NAME_BYTES} UTF-8 bytes, no control characters)` });
    }
  });
  file.static?.forEach((entry, index) => {
    const at = `/static/${index}`;
    const prefix = prefixProblem(entry.prefix, taken, fieldName(at));
    if (prefix) problems.push({ pointer: `${at}/prefix`, message: prefix });
    if (!isDirectory(resolve(baseDir, entry.root))) {
      problems.push({ pointer: `${at}/root`, message: `no such directory: ${resolve(baseDir, entry.root)}` });
    }
  });
  const names = new Set<string>();
  const digests = new Set<string>();
  file.tokens?.forEach((entry, index) => {
    const at = `/tokens/${index}`;
    if (entry.name.trim() === '') problems.push({ pointer: `${at}/name`, message: 'must not be empty' });
    else if (names.has(entry.name)) problems.push({ pointer: `${at}/name`, message: `"${entry.name}" is used by another token` });
    names.add(entry.name);
    if ((entry.sha256 === undefined) === (entry.token === undefined)) {
      problems.push({ pointer: at, message: 'give exactly one of "sha256" (preferred) or "token"' });
    } else if (entry.sha256 !== undefined && !SHA256_FORMAT.test(entry.sha256)) {
      problems.push({ pointer: `${at}/sha256`, message: 'expected 64 hex digits (the SHA-256 of the token)' });
    } else if (entry.token !== undefined && entry.token.length < 16) {
      problems.push({ pointer: `${at}/token`, message: 'too short: use at least 16 characters (e.g. openssl rand -hex 32)' });
    } else {
      const digest = digestOf(entry);
      if (digests.has(digest)) problems.push({ pointer: at, message: 'the same token as another entry' });
      digests.add(digest);
    }
    for (const list of ['publish', 'subscribe', 'queues'] as const) {
      entry[list]?.forEach((pattern, position) => {
        if (!isValidPattern(pattern)) {
          problems.push({ pointer: `${at}/${list}/${position}`, message: `"${pattern}" is not a topic pattern (segments separated by ".", "*" for one segment, ">" last for the rest)` });
        }
      });
    }
  });
  file.cors?.origins.forEach((origin, index) => {
    let valid = false;
    try {
      const url = new URL(origin);
      valid = (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === origin;
    } catch {
      valid = false;
    }
    if (!valid) problems.push({ pointer: `/cors/origins/${index}`, message: 'expected an origin such as "http://localhost:5173" (scheme, host, port; no path or trailing "/")' });
  });
  file.hosts?.forEach((host, index) => {
    if (hostName(host) === null) problems.push({ pointer: `/hosts/${index}`, message: 'expected a host name or address such as "brainstem.lan" or "192.168.1.20" (no scheme or port)' });
  });
  for (const { index, field, message } of ruleProblems(file.history ?? [])) {
    problems.push({ pointer: `/history/${index}/${field}`, message });
  }
  return problems;
}

/** A `hosts` entry as a `Host` header's name compares with it, or null if it is not a bare name. */
function hostName(entry: string): string | null {
  try {
    const url = new URL(`http://${entry}`);
    return url.host === url.hostname && url.pathname === '/' && url.username === '' && entry.toLowerCase() === url.hostname ? url.hostname : null;
  } catch {
    return null;
  }
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

function digestOf(entry: { sha256?: string; token?: string }): string {
  return entry.sha256 !== undefined ? entry.sha256.toLowerCase() : sha256Hex(entry.token as string);
}

function normalize(file: EdgeFile, source: string | null, baseDir: string): EdgeConfig {
  return {
    source,
    proxy: (file.proxy ?? []).map((entry) => ({
      prefix: entry.prefix,
      upstream: entry.upstream,
      websocket: entry.websocket ?? false,
      auth: entry.auth ?? true,
      rewritePrefix: entry.rewritePrefix ?? '',
      ...(entry.service === undefined ? {} : { service: entry.service }),
    })),
    static: (file.static ?? []).map((entry) => ({
      prefix: entry.prefix,
      root: resolve(baseDir, entry.root),
      csp: entry.csp ?? true,
    })),
    tokens: (file.tokens ?? []).map((entry) => ({
      name: entry.name,
      sha256: digestOf(entry),
      publish: entry.publish ?? [],
      subscribe: entry.subscribe ?? [],
      queues: entry.queues ?? [],
      admin: entry.admin ?? false,
    })),
    corsOrigins: file.cors?.origins ?? [],
    hosts: (file.hosts ?? []).map((entry) => hostName(entry) as string),
    history: file.history ? file.history.map(withDefaults) : null,
  };
}

/**
 * Parses and checks the text of a config file. `label` names it in
 * messages; relative roots resolve from `baseDir`. Throws ConfigError whose
 * message has one line per problem: `label:LINE: field: what is wrong`.
 */
export function parseEdgeConfig(text: string, label: string, baseDir: string): EdgeConfig {
  let located: LocatedJson;
  try {
    located = parseJsonWithLocations(text);
  } catch (err) {
    if (err instanceof JsonSyntaxError) {
      throw new ConfigError(`${label}:${err.location.line}:${err.location.column}: not valid JSON: ${err.message}`);
    }
    throw err;
  }
  const problems = schemaProblems(located.value);
  if (problems.length === 0) problems.push(...meaningProblems(located.value as EdgeFile, baseDir));
  if (problems.length > 0) {
    const lines = problems.map(({ pointer, message }) => `${label}:${located.locate(pointer).line}: ${fieldName(pointer)}: ${message}`);
    throw new ConfigError(lines.join('\n'));
  }
  return normalize(located.value as EdgeFile, label, baseDir);
}

/** Reads the config file at `path`, or gives the empty config when `path` is null. */
export function loadEdgeConfig(path: string | null): EdgeConfig {
  if (path === null) return EMPTY_EDGE_CONFIG;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`BRAINSTEM_CONFIG=${JSON.stringify(path)}: cannot read the config file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return parseEdgeConfig(text, path, dirname(resolve(path)));
}
