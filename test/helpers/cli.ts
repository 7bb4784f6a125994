import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The built command (`npm test` builds before it runs the tests). */
export const cli = fileURLToPath(new URL('../../dist/src/cli/brainstem.js', import.meta.url));

export interface Run { code: number | null; stdout: string; stderr: string }

/** Runs `brainstem args…` to its end; `input` goes to its stdin. */
export function brainstem(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [cli, ...args], { env: { ...process.env, ...options.env }, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }));
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}
