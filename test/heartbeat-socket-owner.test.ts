import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import t from 'tap';
import { findSocketInode, peerSocketInode, procEndpoint, SocketOwnerProofs, socketInodesOf } from '../src/heartbeat/socket-owner.js';

t.test('procEndpoint: an address and port as /proc/net/tcp and tcp6 write them', async (t) => {
  // As the kernel prints them on a little-endian machine.
  t.equal(procEndpoint('127.0.0.1', 8080, 4), '0100007F:1F90');
  t.equal(procEndpoint('::ffff:127.0.0.1', 8080, 4), '0100007F:1F90', 'a dual-stack listener sees IPv4 peers as mapped');
  t.equal(procEndpoint('127.0.0.1', 42001, 16), '0000000000000000FFFF00000100007F:A411', 'an IPv4 socket in the IPv6 table');
  t.equal(procEndpoint('::1', 80, 16), '00000000000000000000000001000000:0050');
  t.equal(procEndpoint('fe80::1:2%eth0', 1, 16), '000080FE000000000000000002000100:0001');
  t.equal(procEndpoint('::1', 80, 4), null, 'IPv6 has no place in the IPv4 table');
  t.equal(procEndpoint('not an address', 80, 16), null);
});

const TABLE = [
  '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
  '   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0',
  '   1: 0100007F:A411 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 2222 1 0000000000000000 20 4 30 10 -1',
  '   2: 0100007F:1F90 0100007F:A411 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 20 4 30 10 -1',
  '   3: 0100007F:A412 0100007F:1F90 06 00000000:00000000 03:00000F7A 00000000     0        0 0 3 0000000000000000',
].join('\n');

t.test('findSocketInode: the line with both ends, not its mirror; TIME_WAIT owns nothing', async (t) => {
  t.equal(findSocketInode(TABLE, '0100007F:A411', '0100007F:1F90'), 2222, "the client's socket");
  t.equal(findSocketInode(TABLE, '0100007F:1F90', '0100007F:A411'), 3333, "the server's side of it");
  t.equal(findSocketInode(TABLE, '0100007F:A412', '0100007F:1F90'), null, 'inode 0: closed, in TIME_WAIT');
  t.equal(findSocketInode(TABLE, '0100007F:0001', '0100007F:1F90'), null);
});

/** A loopback server and a connection to it from `connectFrom` (this process, or a child). */
async function loopback(t: { teardown(fn: () => unknown): void }, host: string) {
  const accepted: Socket[] = [];
  const server = createServer((socket) => accepted.push(socket));
  server.listen(0, host);
  await once(server, 'listening');
  t.teardown(() => {
    for (const socket of accepted) socket.destroy();
    server.close();
  });
  return { server, port: (server.address() as AddressInfo).port, accepted };
}

t.test('a real loopback connection: its owner is proven, another process is not', async (t) => {
  for (const host of ['127.0.0.1', '::1', '::']) {
    const { port, accepted } = await loopback(t, host);
    const client = connect(port, host === '::' ? '127.0.0.1' : host);
    t.teardown(() => client.destroy());
    await once(client, 'connect');
    while (accepted.length === 0) await new Promise((r) => setImmediate(r));
    const serverSide = accepted[0] as Socket;
    const inode = await peerSocketInode(serverSide);
    t.ok(inode !== null && inode > 0, `${host}: the peer's socket is found`);
    t.ok((await socketInodesOf(process.pid)).has(inode as number), `${host}: this process holds it`);

    const proofs = new SocketOwnerProofs();
    t.equal(await proofs.prove(serverSide, process.pid), true, `${host}: the owner is proven`);
    const stranger = spawn('sleep', ['30'], { stdio: 'ignore' });
    t.teardown(() => stranger.kill('SIGKILL'));
    t.equal(await proofs.prove(serverSide, stranger.pid as number), false, `${host}: a process that does not hold the socket is not`);
  }
});

t.test('a child that connects proves its own pid; the parent naming it does not', async (t) => {
  const { port, accepted } = await loopback(t, '127.0.0.1');
  const child = spawn(process.execPath, ['-e', `require('net').connect(${port}, '127.0.0.1').on('connect', () => console.log('up')); setInterval(() => {}, 1000)`], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => child.kill('SIGKILL'));
  await once(child.stdout, 'data');
  while (accepted.length === 0) await new Promise((r) => setImmediate(r));
  const proofs = new SocketOwnerProofs();
  t.equal(await proofs.prove(accepted[0] as Socket, child.pid as number), true);
  t.equal(await proofs.prove(accepted[0] as Socket, process.pid), false, 'the parent does not hold the child\'s socket');
});

t.test('no ports (an injected request) or no /proc: nothing is proven', async (t) => {
  const proofs = new SocketOwnerProofs();
  t.equal(await proofs.prove({ remoteAddress: '127.0.0.1' }, process.pid), false);
  t.same(await socketInodesOf(4_194_303), new Set(), 'no such process: no sockets');
  const missingProc = new SocketOwnerProofs('/nonexistent');
  t.equal(await missingProc.prove({ localAddress: '127.0.0.1', localPort: 1, remoteAddress: '127.0.0.1', remotePort: 2 }, process.pid), false);
});

t.test('a /proc of its own: the TCP table is read once per connection, a pid without sockets never needs it', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'brainstem-proc-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'net'));
  writeFileSync(join(root, 'net', 'tcp'), TABLE);
  const holder = (pid: number, links: string[]) => {
    mkdirSync(join(root, String(pid), 'fd'), { recursive: true });
    links.forEach((link, fd) => symlinkSync(link, join(root, String(pid), 'fd', String(fd))));
  };
  holder(1234, ['/dev/null', 'socket:[9999]', 'socket:[2222]']);
  holder(1235, ['socket:[2222]']); // a child that inherited the socket
  holder(1236, ['socket:[3333]']);
  holder(1237, ['pipe:[1]']);
  // The gateway's side of the connection: it listens on 8080, the client is 42001.
  const socket = { localAddress: '127.0.0.1', localPort: 8080, remoteAddress: '127.0.0.1', remotePort: 42001 };

  const proofs = new SocketOwnerProofs(root);
  t.equal(await proofs.prove(socket, 1237), false, 'no socket at all');
  t.equal(await proofs.prove(socket, 1236), false, "the gateway's own side is not the client's");
  t.equal(await proofs.prove(socket, 1234), true, 'the client');
  unlinkSync(join(root, 'net', 'tcp'));
  t.equal(await proofs.prove(socket, 1235), true, 'another holder of the same socket, without a second read of the table');
  t.equal(await proofs.prove(socket, 4242), false, 'a pid that does not exist');
  for (let pid = 5000; pid < 5040; pid += 1) await proofs.prove(socket, pid);
  t.equal(await proofs.prove(socket, 1234), true, 'many pids named on one connection: proofs still right (older ones are recomputed)');
});
