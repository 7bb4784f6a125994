/**
 * `brainstem/client` in Node: the BrokerClient over the `ws` package, and
 * the service template. Browsers load `browser.ts` (bundled) instead.
 */
import WebSocket from 'ws';
import { setProcessPid } from './defaults.js';
import { setDefaultWebSocket, type SocketConstructor } from './socket.js';

// ws implements the browser's WebSocket API (onopen, onmessage with string data, …).
setDefaultWebSocket(WebSocket as unknown as SocketConstructor);
// The gateway links the connection to this process (`?pid=`): its heartbeat vouches for the tasks it holds.
setProcessPid(process.pid);

export * from './browser.js';
export { startService, type ServiceOptions } from './start-service.js';
