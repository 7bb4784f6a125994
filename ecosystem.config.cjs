// PM2 apps. The heartbeat organ reads `instances` per name as its limit.
module.exports = {
  apps: [
    {
      name: 'brainstem',
      script: 'dist/server.js',
      instances: 1,
      env: { PORT: '8080', HOST: '127.0.0.1', LOG_LEVEL: 'info' },
    },
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
