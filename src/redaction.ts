/**
 * What must never leave the gateway: tokens in URLs and the credentials of
 * REDIS_URL / MONGO_URL. One rule each, applied to every log line (a pino
 * `streamWrite` hook) and to what answers quote back.
 */

const MASK = '***';

/**
 * The URL with any user and password replaced by `***`
 * (`redis://***@host:6379`); everything before the last `@` goes, so that
 * even a malformed URL keeps its password.
 */
export function maskUrlCredentials(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)?.*@/is, `$1${MASK}@`);
}

/** Same, for a URL anywhere inside a text (a message that quotes it). */
export function maskCredentialsInText(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@"'\\]*@/gi, `$1${MASK}@`);
}

function decodedName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw;
  }
}

/**
 * Every `token` query parameter masked, however its name is spelled or
 * percent-encoded (`?%74oken=`, `?TOKEN=`): a parameter is a token when its
 * decoded name is, since that is how the query parser reads it.
 */
export function redactTokensInText(text: string): string {
  if (!text.includes('=')) return text;
  return text.replace(/([?&;])([^=&#?\s"'\\]{1,64})=([^&#\s"'\\]*)/g, (whole, separator: string, name: string) =>
    decodedName(name).trim().toLowerCase() === 'token' ? `${separator}${name}=${MASK}` : whole);
}

/** The password (and user) of a URL, in the spellings a text could hold them in. */
function secretsOf(url: string | null): string[] {
  if (url === null) return [];
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return [];
  }
  const secrets = new Set<string>();
  for (const raw of [parsed.password, parsed.username]) {
    // A short user name ("default") says nothing; a password is masked whatever its length.
    if (raw === '' || (raw === parsed.username && raw.length < 8)) continue;
    const decoded = decodedName(raw);
    for (const spelling of [raw, decoded, encodeURIComponent(decoded), JSON.stringify(decoded).slice(1, -1)]) secrets.add(spelling);
  }
  // Longest first, so that one spelling never leaves part of another behind.
  return [...secrets].sort((a, b) => b.length - a.length);
}

/**
 * The one rule for whatever the gateway writes or quotes: tokens in URLs,
 * credentials in URLs, and the configured secrets wherever they appear.
 */
export function createRedactor(urlsWithSecrets: readonly (string | null)[]): (text: string) => string {
  const secrets = urlsWithSecrets.flatMap(secretsOf);
  return (text) => {
    let safe = maskCredentialsInText(redactTokensInText(text));
    for (const secret of secrets) if (safe.includes(secret)) safe = safe.split(secret).join(MASK);
    return safe;
  };
}
