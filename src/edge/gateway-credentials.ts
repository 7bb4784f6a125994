/**
 * The gateway's own token is for the gateway: it is taken off a request
 * before the request goes on to an upstream, so an internal service never
 * learns a credential it could replay against the gateway.
 */

/** The query string (without `?`) of `url`, minus the `token` parameter if it was the one used. */
export function queryWithoutToken(url: string, usedToken: string | null): string {
  const at = url.indexOf('?');
  if (at < 0) return '';
  const params = new URLSearchParams(url.slice(at + 1));
  if (usedToken !== null && params.get('token') === usedToken) params.delete('token');
  return params.toString();
}

/** The headers minus `Authorization` when it carried the gateway's token. */
export function headersWithoutToken<H extends Record<string, unknown>>(headers: H, usedToken: string | null): H {
  const authorization = headers.authorization;
  if (usedToken === null || typeof authorization !== 'string') return headers;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  if (!match || match[1] !== usedToken) return headers;
  const copy = { ...headers };
  delete copy.authorization;
  return copy;
}

