// PM2 apps. The heartbeat organ reads `instances` per name as its limit.
module.exports = {
  apps: [
    {
      name: 'brainstem',
      script: 'dist/server.js',
      instances: 1,
      env: { PORT: '8080', HOST: '127.0.0.1', LOG_LEVEL: 'info' },
    },
  ],
};
