// PM2 apps. The heartbeat organ reads `instances` per name as its limit.
//
// Two gateways as one broker: start PM2 with REDIS_URL set to a Redis both
// can reach (`REDIS_URL=redis://127.0.0.1:6379 pm2 start ecosystem.config.cjs`).
// A second gateway then runs on port 8081; the bus (events cross between
// them through Redis pub/sub) and the queues (BullMQ) are shared, and
// `GET /bus` on either lists both. Without REDIS_URL one gateway runs, with
// its own embedded Redis.
const sharedRedis = process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL } : {};
const gateway = (name, port) => ({
  name,
  script: 'dist/server.js',
  instances: 1,
  env: { PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info', ...sharedRedis },
});

module.exports = {
  apps: [
    gateway('brainstem', 8080),
    ...(process.env.REDIS_URL ? [gateway('brainstem-2', 8081)] : []),
    // The seed's flow, on brainstem/client (examples/): a file change becomes
    // fs.change, an agent.think task, an answer on replyTo, an action.plan.
    {
      name: 'file-watcher',
      script: 'examples/file-watcher.js',
      instances: 1,
      env: { BRAINSTEM_URL: 'ws://127.0.0.1:8080/bus', WATCH_DIR: './examples' },
    },
    {
      name: 'reasoning',
      script: 'examples/reasoning-service.js',
      instances: 1,
      env: { BRAINSTEM_URL: 'ws://127.0.0.1:8080/bus' },
    },
    {
      name: 'thinker',
      script: 'examples/think-worker.js',
      instances: 1,
      env: { BRAINSTEM_URL: 'ws://127.0.0.1:8080/bus', CONCURRENCY: '2' },
    },
  ],
};
