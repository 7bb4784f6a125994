import { fileURLToPath } from 'node:url';

/** The built gateway entry (`npm test` builds before it runs the tests). */
export const serverEntry = fileURLToPath(new URL('../../dist/server.js', import.meta.url));
