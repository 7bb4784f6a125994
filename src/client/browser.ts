/**
 * `brainstem/client` in browsers: the same BrokerClient over the native
 * WebSocket. Nothing here may import Node modules; `npm run build:client`
 * bundles this file to public/build/brainstem-client.js.
 */
export {
  BrokerClient,
  defaultOptions,
  toBusUrl,
  uniqueId,
  type BrokerClientEvents,
  type BrokerClientOptions,
  type ConnectOptions,
  type EnqueueOptions,
  type EventHandler,
  type FollowOptions,
  type PublishOptions,
  type ReconnectOptions,
  type SubscribeOptions,
  type StreamChunk,
  type SubscribeResult,
} from './broker-client.js';
export { TaskWorker } from './task-worker.js';
export { BrokerError, type Task, type TaskHandler } from './types.js';
export type { SocketConstructor, SocketLike } from './socket.js';
export type { BusEvent } from '../bus/protocol.js';
export { isValidPattern, isValidQueueName, isValidTopic, patternMatches } from '../bus/topic.js';
