import { readFile, readdir, readlink } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { endianness } from 'node:os';

/**
 * Which process holds the other end of a loopback TCP connection, read from
 * /proc: the peer's socket is the line of /proc/net/tcp (or tcp6) whose
 * local end is the connection's remote end and whose remote end is its
 * local end; its inode (column 10) appears as `socket:[INODE]` among the
 * owner's /proc/PID/fd links. This is how a beat proves the pid it names is
 * its sender's: nothing else a client says can be trusted for a signal.
 */

/** A TCP connection's two ends as the gateway sees them. */
export interface ConnectionEnds {
  localAddress?: string | undefined;
  localPort?: number | undefined;
  remoteAddress?: string | undefined;
  remotePort?: number | undefined;
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** Parses IPv6 text (with `::` and an IPv4 tail) into its 16 bytes; null if it is not IPv6. */
function ipv6Bytes(text: string): Uint8Array | null {
  let address = text.replace(/%.*$/, '');
  if (!isIPv6(address)) return null;
  // An IPv4 tail (`::ffff:127.0.0.1`) is the last two groups.
  address = address.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a: string, b: string, c: string, d: string) =>
    `${((Number(a) << 8) | Number(b)).toString(16)}:${((Number(c) << 8) | Number(d)).toString(16)}`);
  const [left = '', right] = address.split('::');
  const leftGroups = left === '' ? [] : left.split(':');
  const rightGroups = right === undefined || right === '' ? [] : right.split(':');
  const zeros = right === undefined ? 0 : 8 - leftGroups.length - rightGroups.length;
  const groups = [...leftGroups, ...new Array<string>(zeros).fill('0'), ...rightGroups];
  const bytes = new Uint8Array(16);
  groups.forEach((group, i) => {
    const value = Number.parseInt(group, 16);
    bytes[i * 2] = value >> 8;
    bytes[i * 2 + 1] = value & 0xff;
  });
  return bytes;
}

/** An address as 16 bytes, IPv4 as IPv4-mapped IPv6; null if unreadable. */
function addressBytes(address: string): Uint8Array | null {
  return ipv6Bytes(isIPv4(address) ? `::ffff:${address}` : address);
}

function isMapped(bytes: Uint8Array): boolean {
  return bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
}

/**
 * How an endpoint is written in /proc/net/tcp (`width` 4) or tcp6 (16):
 * each 32-bit word of the address in host byte order, in upper-case hex,
 * then `:` and the port in four hex digits. Null when the address has no
 * form of that width (IPv6 in the IPv4 table).
 */
export function procEndpoint(address: string, port: number, width: 4 | 16): string | null {
  const bytes = addressBytes(address);
  if (!bytes || (width === 4 && !isMapped(bytes))) return null;
  const words = Buffer.from(width === 4 ? bytes.subarray(12) : bytes);
  if (LITTLE_ENDIAN) for (let i = 0; i < words.length; i += 4) words.subarray(i, i + 4).reverse();
  return `${words.toString('hex').toUpperCase()}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * The inode of the socket whose local end is `local` and remote end is
 * `remote` (both as `procEndpoint` writes them) in one /proc/net/tcp text.
 * One substring search, not a parse of every line: the table lists every
 * TCP socket of the machine.
 */
export function findSocketInode(procNetTcp: string, local: string, remote: string): number | null {
  const at = procNetTcp.indexOf(` ${local} ${remote} `);
  if (at < 0) return null;
  const end = procNetTcp.indexOf('\n', at);
  const fields = procNetTcp.slice(at, end < 0 ? undefined : end).trim().split(/\s+/);
  // From the local address on, the inode is the ninth field.
  const inode = Number(fields[8]);
  // Inode 0: a socket in TIME_WAIT, owned by no one any more.
  return Number.isInteger(inode) && inode > 0 ? inode : null;
}

/** The inode of the peer's socket of a loopback connection, or null when /proc does not show it. */
export async function peerSocketInode(ends: ConnectionEnds, procRoot = '/proc'): Promise<number | null> {
  const { localAddress, localPort, remoteAddress, remotePort } = ends;
  if (!localAddress || !remoteAddress || !localPort || !remotePort) return null;
  // The peer's socket is IPv4 or IPv6 whatever the listener is: look in both tables.
  for (const [table, width] of [['tcp', 4], ['tcp6', 16]] as const) {
    const peerEnd = procEndpoint(remoteAddress, remotePort, width);
    const ownEnd = procEndpoint(localAddress, localPort, width);
    if (peerEnd === null || ownEnd === null) continue;
    let text: string;
    try {
      text = await readFile(`${procRoot}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    const inode = findSocketInode(text, peerEnd, ownEnd);
    if (inode !== null) return inode;
  }
  return null;
}

/** The inodes of the sockets `pid` holds; empty when it holds none or cannot be read (gone, another user's). */
export async function socketInodesOf(pid: number, procRoot = '/proc'): Promise<Set<number>> {
  const inodes = new Set<number>();
  let fds: string[];
  try {
    fds = await readdir(`${procRoot}/${pid}/fd`);
  } catch {
    return inodes;
  }
  await Promise.all(fds.map(async (fd) => {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(await readlink(`${procRoot}/${pid}/fd/${fd}`));
      if (match) inodes.add(Number(match[1]));
    } catch {
      // closed meanwhile
    }
  }));
  return inodes;
}

/** Pids remembered per connection: one is the rule; a client naming many gets no unbounded memory. */
const PIDS_PER_CONNECTION = 16;

interface ConnectionProofs {
  ends: ConnectionEnds;
  /**
   * The peer socket's inode, read when a pid first needs it: fixed for the
   * connection's life, so the TCP table is read at most once per connection.
   */
  peerInode: Promise<number | null> | null;
  pids: Map<number, Promise<boolean>>;
}

/**
 * Answers "does `pid` own the other end of this connection?" once per
 * connection and pid: the answer is kept on the socket while it lives
 * (a keep-alive HTTP client or a WebSocket beats many times on one).
 */
export class SocketOwnerProofs {
  private readonly proofs = new WeakMap<object, ConnectionProofs>();

  constructor(private readonly procRoot = '/proc') {}

  prove(socket: ConnectionEnds & object, pid: number): Promise<boolean> {
    let connection = this.proofs.get(socket);
    if (!connection) {
      connection = { ends: socket, peerInode: null, pids: new Map() };
      this.proofs.set(socket, connection);
    }
    let proof = connection.pids.get(pid);
    if (!proof) {
      proof = this.check(connection, pid);
      if (connection.pids.size >= PIDS_PER_CONNECTION) connection.pids.delete(connection.pids.keys().next().value as number);
      connection.pids.set(pid, proof);
    }
    return proof;
  }

  private async check(connection: ConnectionProofs, pid: number): Promise<boolean> {
    // The pid's own sockets first: a pid holding none (a `sleep`, another
    // user's process) is refused without reading the machine's TCP table,
    // which the kernel writes out in full on every read.
    const held = await socketInodesOf(pid, this.procRoot);
    if (held.size === 0) return false;
    connection.peerInode ??= peerSocketInode(connection.ends, this.procRoot);
    const inode = await connection.peerInode;
    return inode !== null && held.has(inode);
  }
}
