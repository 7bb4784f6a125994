import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';

/** Thrown when another live process already runs the embedded Redis of a data folder. */
export class DataDirBusyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DataDirBusyError';
  }
}

export interface DataDirLock {
  release(): Promise<void>;
}

const HOLDER_ANSWER_MS = 2000;

/**
 * The lock is an abstract unix socket (Linux) named after the folder's real
 * path: binding it is atomic, so two gateways started at the same instant
 * (PM2 cluster workers) cannot both win, and the kernel frees it when its
 * process dies, however it dies, so a crash leaves no stale lock behind.
 */
function lockName(dir: string): string {
  return `\0brainstem-redis-${createHash('sha256').update(realpathSync(dir)).digest('hex').slice(0, 40)}`;
}

function listen(server: Server, name: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') resolve(false);
      else reject(err);
    };
    server.once('error', onError);
    // exclusive: in a cluster worker (PM2 cluster mode) the socket would
    // otherwise be bound by the primary and shared, so every worker would win.
    server.listen({ path: name, exclusive: true }, () => {
      server.off('error', onError);
      resolve(true);
    });
  });
}

/** The holder answers every connection with its pid; null if it does not answer in time. */
function holderPid(name: string): Promise<number | null> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = connect(name);
    const timer = setTimeout(() => socket.destroy(), HOLDER_ANSWER_MS);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => { answer += chunk; });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      const pid = Number(answer.trim());
      resolve(Number.isInteger(pid) && pid > 0 ? pid : null);
    });
  });
}

/**
 * Claims a data folder for this process's embedded Redis. Two gateways on
 * one folder would each start a redis-server on the same files and socket
 * (each taking the other's for an orphan and shutting it down), so the
 * second one is refused with a message that says what to do instead.
 * Off Linux there are no abstract sockets and no lock is taken.
 */
export async function lockDataDir(dir: string): Promise<DataDirLock> {
  if (process.platform !== 'linux') return { release: async () => {} };
  const name = lockName(dir);
  const server = createServer((socket) => socket.end(`${process.pid}\n`));
  if (!(await listen(server, name))) {
    const pid = await holderPid(name);
    const holder = pid === null ? 'another process' : `another gateway (pid ${pid})`;
    throw new DataDirBusyError(
      `${holder} already runs the embedded Redis in ${dir}: gateways cannot share one. ` +
      'Give each gateway its own DATA_DIR, or set REDIS_URL to one Redis they all use ' +
      '(under PM2: exec_mode "fork" with instances 1, or REDIS_URL for cluster mode)',
    );
  }
  // The lock must never be what keeps a process alive.
  server.unref();
  return {
    release: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
