import { EMPTY_EDGE_CONFIG, sha256Hex, type EdgeConfig, type TokenSpec } from '../../src/edge/edge-config.js';

/** An edge config as the loader would give it, with only the parts a test names. */
export function edgeConfig(parts: Partial<EdgeConfig>): EdgeConfig {
  return { ...EMPTY_EDGE_CONFIG, ...parts };
}

/** A token entry for `token` (stored hashed, as from the file's `sha256`). */
export function tokenSpec(name: string, token: string, rights: Partial<Omit<TokenSpec, 'name' | 'sha256'>> = {}): TokenSpec {
  return { name, sha256: sha256Hex(token), publish: [], subscribe: [], queues: [], admin: false, ...rights };
}

export function bearer(token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` };
}
