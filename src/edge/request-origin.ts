import { isLoopbackHost } from './bind-check.js';

/**
 * Who may talk to the gateway from a browser. A browser sends `Origin` on
 * every WebSocket upgrade and every cross-site request, and cannot forge it;
 * it always sends `Host`, which a DNS-rebinding page cannot choose either.
 * Clients that are not browsers send no `Origin` and are not concerned.
 */
export interface BrowserPolicy {
  /** Origins besides the gateway's own that may call it (the config's `cors.origins`). */
  corsOrigins: readonly string[];
  /** Host names besides the loopback ones a request may name (the config's `hosts`). */
  hosts: readonly string[];
  /** With tokens on, a request's `Host` is not checked: a page that rebinds a name has no token. */
  checkHost: boolean;
}

export type BrowserVerdict = { ok: true } | { ok: false; message: string };

const OK: BrowserVerdict = { ok: true };

/** `host[:port]` as the URL parser normalizes it (lowercase, default port dropped), or null. */
function normalizedHost(scheme: string, host: string): URL | null {
  try {
    const url = new URL(`${scheme}//${host}`);
    return url.username === '' && url.password === '' && url.pathname === '/' && url.search === '' ? url : null;
  } catch {
    return null;
  }
}

/** Is `origin` the page the gateway itself serves at `host` (same host and port)? */
export function isOwnOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  let page: URL;
  try {
    page = new URL(origin);
  } catch {
    return false;
  }
  if (page.protocol !== 'http:' && page.protocol !== 'https:') return false;
  const own = normalizedHost(page.protocol, host);
  return own !== null && own.host === page.host;
}

/** Is `host` (a `Host` header) a loopback name or one of `allowed`, whatever its port? */
export function isAllowedHost(host: string, allowed: readonly string[]): boolean {
  const parsed = normalizedHost('http:', host);
  if (parsed === null) return false;
  return isLoopbackHost(parsed.hostname) || allowed.includes(parsed.hostname);
}

/**
 * The verdict on one request from its `Origin` and `Host` headers. Origin
 * first: a hostile page is refused whatever it names.
 */
export function judgeBrowser(policy: BrowserPolicy, origin: string | undefined, host: string | undefined): BrowserVerdict {
  if (origin !== undefined && !policy.corsOrigins.includes(origin) && !isOwnOrigin(origin, host)) {
    return { ok: false, message: `origin ${JSON.stringify(origin.slice(0, 200))} may not use the gateway; list it in the config's cors.origins to allow it` };
  }
  // A client with no Host (HTTP/1.0) is no browser, and so no rebinding page.
  if (policy.checkHost && host !== undefined && !isAllowedHost(host, policy.hosts)) {
    return { ok: false, message: `host ${JSON.stringify(host.slice(0, 200))} is not this gateway's; list its name in the config's hosts to allow it` };
  }
  return OK;
}
