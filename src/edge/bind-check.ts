import { isIP } from 'node:net';
import { ConfigError } from '../config.js';

/** Addresses only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (bare === 'localhost' || bare.endsWith('.localhost')) return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  if (isIP(bare) === 6) return bare === '::1' || /^::ffff:127\./.test(bare) || bare === '0:0:0:0:0:0:0:1';
  return false;
}

/**
 * Secure by default: with no tokens nothing checks who connects, so the
 * gateway may listen on loopback only, unless the operator says otherwise
 * explicitly (`BRAINSTEM_INSECURE`).
 */
export function assertSafeBinding(options: { host: string; insecure: boolean; tokenCount: number }): void {
  if (options.tokenCount > 0 || options.insecure || isLoopbackHost(options.host)) return;
  throw new ConfigError(
    `HOST=${JSON.stringify(options.host)}: refusing to listen beyond loopback with no tokens configured, `
    + 'since anyone on the network could then publish, subscribe and drain queues. '
    + 'Add tokens to the config file (BRAINSTEM_CONFIG), or set BRAINSTEM_INSECURE=1 to accept that.',
  );
}
