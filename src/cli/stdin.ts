import { fstatSync } from 'node:fs';

/** How long a socket stdin (a parent process's pipe) may stay silent before it counts as absent. */
const SILENT_PIPE_MS = 250;

function readAll(timeoutMs: number | null): Promise<string | null> {
  const stdin = process.stdin;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout | null = null;
    const finish = (value: string | null) => {
      if (timer) clearTimeout(timer);
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      stdin.off('error', onError);
      stdin.pause();
      if (value === null) stdin.destroy();
      resolve(value);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      if (timer) clearTimeout(timer);
      timer = null;
    };
    const onEnd = () => finish(Buffer.concat(chunks).toString('utf8'));
    const onError = (err: Error) => {
      if (timer) clearTimeout(timer);
      reject(err);
    };
    stdin.on('data', onData);
    stdin.once('end', onEnd);
    stdin.once('error', onError);
    // Data clears the timer: once input starts, it is read to its end.
    if (timeoutMs !== null) timer = setTimeout(() => finish(null), timeoutMs);
  });
}

/**
 * Reads stdin when it carries input: a pipe or a file is read to its end;
 * a terminal or /dev/null is not read; a parent process's pipe (a socket)
 * is read if something arrives soon, so that `execFile` without input
 * does not hang. `required` (the `-` argument) always reads to the end.
 */
export async function readStdin(required: boolean): Promise<string | null> {
  if (required) return readAll(null);
  if (process.stdin.isTTY) return null;
  let stat;
  try {
    stat = fstatSync(0);
  } catch {
    return null;
  }
  if (stat.isFIFO() || stat.isFile()) return readAll(null);
  if (stat.isSocket()) return readAll(SILENT_PIPE_MS);
  return null;
}
