import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export type GcType = 'minor' | 'major';
/** `last-resort`: a major GC that also compacts and hands emptied pages back to the system at once. */
export type GcFlavor = 'regular' | 'last-resort';

/**
 * V8's `gc` function, taken from a context created while --expose-gc is on;
 * the flag is turned off again, so no other context (nor this one's global) gets it.
 */
export function v8Gc(type: GcType, flavor: GcFlavor = 'regular'): () => void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (options: { type: GcType; flavor: GcFlavor }) => void;
  setFlagsFromString('--no-expose-gc');
  return () => gc({ type, flavor });
}
