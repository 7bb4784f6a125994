/**
 * `brainstem/client` in Node: the BrokerClient over the `ws` package, and
 * the service template. Browsers load `browser.ts` (bundled) instead.
 */
import WebSocket from 'ws';
import { setDefaultWebSocket, type SocketConstructor } from './socket.js';

// ws implements the browser's WebSocket API (onopen, onmessage with string data, …).
setDefaultWebSocket(WebSocket as unknown as SocketConstructor);

export {
  BrokerClient,
  toBusUrl,
  uniqueId,
  type BrokerClientEvents,
  type BrokerClientOptions,
  type ConnectOptions,
  type EnqueueOptions,
  type EventHandler,
  type PublishOptions,
  type ReconnectOptions,
} from './broker-client.js';
export { TaskWorker } from './task-worker.js';
export { BrokerError, type Task, type TaskHandler } from './types.js';
export type { SocketConstructor, SocketLike } from './socket.js';
export type { BusEvent } from '../bus/protocol.js';
export { isValidPattern, isValidQueueName, isValidTopic, patternMatches } from '../bus/topic.js';
export { startService, type ServiceOptions } from './start-service.js';
