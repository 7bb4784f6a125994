// The gateway's entry: loading this file starts the gateway, whatever loads
// it (node, npm start, PM2 in fork or cluster mode). Import
// src/gateway-process.ts instead to start one on your own terms.
import { startGateway } from './src/gateway-process.js';

startGateway().catch((err: unknown) => {
  process.stderr.write(`brainstem: failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
