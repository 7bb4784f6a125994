/**
 * `brainstem/client` in Node: the BrokerClient over the `ws` package, and
 * the service template. Browsers load `browser.ts` (bundled) instead.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import WebSocket from 'ws';
import { setProcessPid } from './defaults.js';
import { setDefaultWebSocket, type SocketConstructor } from './socket.js';
import { setTraceStorage } from './trace.js';

// ws implements the browser's WebSocket API (onopen, onmessage with string data, …).
setDefaultWebSocket(WebSocket as unknown as SocketConstructor);
// The gateway links the connection to this process (`?pid=`): its heartbeat vouches for the tasks it holds.
setProcessPid(process.pid);
// What a handler publishes continues the trace of what it handles.
setTraceStorage(new AsyncLocalStorage<string>());

export * from './browser.js';
export { startService, type ServiceOptions } from './start-service.js';
