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

/** Four address bytes as dotted IPv4. */
function dotted(bytes: Uint8Array): string {
  return Array.from(bytes).join('.');
}

/**
 * One form per address, whatever wrote it: dotted IPv4 for IPv4 and
 * IPv4-mapped IPv6 (a dual-stack listener sees `::ffff:127.0.0.1`), 32 hex
 * digits for any other IPv6.
 */
function canonicalBytes(bytes: Uint8Array): string {
  if (bytes.length === 4) return dotted(bytes);
  const mapped = bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  if (mapped) return dotted(bytes.subarray(12));
  return Buffer.from(bytes).toString('hex');
}

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

/** An address as Node reports it, in the canonical form; null if unreadable. */
export function canonicalAddress(address: string): string | null {
  if (isIPv4(address)) return address;
  const bytes = ipv6Bytes(address);
  return bytes ? canonicalBytes(bytes) : null;
}

/**
 * An address of /proc/net/tcp{,6}: 8 or 32 hex digits, each 32-bit word
 * printed in host byte order, then `:` and the port in hex.
 */
export function decodeProcEndpoint(text: string): string | null {
  const [hex, portHex] = text.split(':');
  if (!hex || !portHex || (hex.length !== 8 && hex.length !== 32)) return null;
  const bytes = Buffer.from(hex, 'hex');
  if (LITTLE_ENDIAN) for (let i = 0; i < bytes.length; i += 4) bytes.subarray(i, i + 4).reverse();
  return `${canonicalBytes(bytes)}:${Number.parseInt(portHex, 16)}`;
}

/** The inode of the socket whose local end is `local` and remote end is `remote` ("address:port", canonical), in one /proc/net/tcp text. */
export function findSocketInode(procNetTcp: string, local: string, remote: string): number | null {
  const lines = procNetTcp.split('\n');
  for (let i = 1; i < lines.length; i += 1) {
    const fields = (lines[i] as string).trim().split(/\s+/);
    if (fields.length < 10) continue;
    if (decodeProcEndpoint(fields[1] as string) !== local || decodeProcEndpoint(fields[2] as string) !== remote) continue;
    const inode = Number(fields[9]);
    // Inode 0: a socket in TIME_WAIT, owned by no one any more.
    return Number.isInteger(inode) && inode > 0 ? inode : null;
  }
  return null;
}

/** The inode of the peer's socket of a loopback connection, or null when /proc does not show it. */
export async function peerSocketInode(ends: ConnectionEnds, procRoot = '/proc'): Promise<number | null> {
  const { localAddress, localPort, remoteAddress, remotePort } = ends;
  if (!localAddress || !remoteAddress || !localPort || !remotePort) return null;
  const peerAddress = canonicalAddress(remoteAddress);
  const ownAddress = canonicalAddress(localAddress);
  if (peerAddress === null || ownAddress === null) return null;
  const peerEnd = `${peerAddress}:${remotePort}`;
  const ownEnd = `${ownAddress}:${localPort}`;
  // The peer's socket is IPv4 or IPv6 whatever the listener is: look in both tables.
  for (const table of ['tcp', 'tcp6']) {
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

/** True when `pid` holds the socket `inode` among its open files; false when it does not or cannot be read. */
export async function processHoldsSocket(pid: number, inode: number, procRoot = '/proc'): Promise<boolean> {
  const link = `socket:[${inode}]`;
  let fds: string[];
  try {
    fds = await readdir(`${procRoot}/${pid}/fd`);
  } catch {
    return false; // gone, or another user's process
  }
  for (const fd of fds) {
    try {
      if (await readlink(`${procRoot}/${pid}/fd/${fd}`) === link) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

/**
 * Answers "does `pid` own the other end of this connection?" once per
 * connection and pid: the answer is kept on the socket while it lives
 * (a keep-alive HTTP client or a WebSocket beats many times on one).
 */
export class SocketOwnerProofs {
  private readonly proofs = new WeakMap<object, Map<number, Promise<boolean>>>();

  constructor(private readonly procRoot = '/proc') {}

  prove(socket: ConnectionEnds & object, pid: number): Promise<boolean> {
    let perPid = this.proofs.get(socket);
    if (!perPid) {
      perPid = new Map();
      this.proofs.set(socket, perPid);
    }
    let proof = perPid.get(pid);
    if (!proof) {
      proof = this.check(socket, pid);
      perPid.set(pid, proof);
    }
    return proof;
  }

  private async check(ends: ConnectionEnds, pid: number): Promise<boolean> {
    const inode = await peerSocketInode(ends, this.procRoot);
    return inode !== null && processHoldsSocket(pid, inode, this.procRoot);
  }
}
