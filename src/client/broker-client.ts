import type { BusEvent } from '../bus/protocol.js';
import { defaultOptions, defaultPid } from './defaults.js';
import { Emitter } from './emitter.js';
import { PubSub, uniqueId, type EventHandler, type PublishOptions, type SubscribeOptions, type SubscribeResult } from './pubsub.js';
import { resolveWebSocket, type SocketConstructor } from './socket.js';
import { StreamFollows, type FollowOptions, type StreamChunk } from './task-stream.js';
import type { TaskWorker } from './task-worker.js';
import { quiet, Transport, type BrokerClientEvents } from './transport.js';
import { BrokerError, type TaskHandler } from './types.js';
import { Work, type EnqueueOptions } from './work.js';
import { isName, MAX_SERVICE_NAME_BYTES } from '../protocol/names.js';

export { defaultOptions, uniqueId, type FollowOptions, type StreamChunk, type BrokerClientEvents, type EnqueueOptions, type EventHandler, type PublishOptions, type SubscribeOptions, type SubscribeResult };

export interface ReconnectOptions {
  /** First delay after a lost connection (default 200 ms); doubles per attempt, back to it after a connection that lasted. */
  initialDelayMs?: number;
  /** Longest delay between attempts (default 10 s). */
  maxDelayMs?: number;
}

/** Every option; its default is in `defaultOptions()` (src/client/defaults.ts). */
export interface BrokerClientOptions {
  /** The gateway: `ws://host:port/bus`; `http(s)://host:port` and a missing path are accepted. */
  url?: string;
  /** The service's name (the seed's option): sent as `?name=`, the default `source` of its events. */
  id?: string;
  /** Sent as `?token=` (browsers cannot set headers). */
  token?: string;
  /** Sent as `?pid=` so the gateway links the connection to this process's heartbeat; default: `process.pid` in Node, none in browsers; `false`: none. */
  pid?: number | false;
  /** `false`: do not reconnect after a lost connection. */
  reconnect?: ReconnectOptions | false;
  /** Frames kept while disconnected; past it, calls reject with BUFFER_FULL. */
  maxBufferedFrames?: number;
  /** How long a frame sent with an id waits for its receipt. */
  receiptTimeoutMs?: number;
  /** Default timeout of request(). */
  requestTimeoutMs?: number;
  /** Send `{"action":"ping"}` after this much silence; drop the connection after twice as much (0: off). */
  keepaliveMs?: number;
  /** How long one connection attempt may take. */
  connectTimeoutMs?: number;
  /** Largest frame to send; larger calls reject at once with PAYLOAD_TOO_LARGE. */
  maxFrameBytes?: number;
  /**
   * Send `opts.traceparent` on every enqueue (a child of the event or task
   * being handled, else a new trace), as publishes do (on by default); an
   * explicit `traceparent` is always sent.
   */
  traceTasks?: boolean;
  /** The WebSocket implementation; default: `ws` in Node (set by the entry), the native one in browsers. */
  WebSocket?: SocketConstructor;
}

export interface ConnectOptions {
  /** Keep trying (with backoff) when the gateway is not there yet, instead of rejecting. */
  retry?: boolean;
}

function defaultUrl(): string {
  const env = typeof process !== 'undefined' ? process.env?.BRAINSTEM_URL : undefined;
  if (env) return env;
  const location = (globalThis as { location?: { protocol: string; host: string } }).location;
  if (location && /^https?:$/.test(location.protocol)) {
    return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/bus`;
  }
  return 'ws://127.0.0.1:8080/bus';
}

function defaultToken(): string | undefined {
  return typeof process !== 'undefined' ? process.env?.BRAINSTEM_TOKEN || undefined : undefined;
}

/** `http://host:port` → `ws://host:port/bus`: people paste the gateway's address. */
export function toBusUrl(raw: string): URL {
  const url = new URL(raw);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new BrokerError('INVALID_URL', `not a ws:// or http:// URL: ${raw}`);
  if (url.pathname === '' || url.pathname === '/') url.pathname = '/bus';
  return url;
}

/**
 * One connection to the gateway's /bus that survives restarts of either
 * side, in three layers (as the Python client): the transport (connection,
 * reconnect with backoff, send buffer, receipts), pub/sub with
 * request/reply, and work with leases. Runs in Node (`ws`) and in browsers
 * (native WebSocket). The seed client's methods keep working
 * (`onTaskReceived`, `pull`, `ack`, `fail`, constructor `{url, id}`).
 */
export class BrokerClient extends Emitter<BrokerClientEvents> {
  readonly url: string;
  readonly id: string;
  private readonly transport: Transport;
  private readonly pubsub: PubSub;
  private readonly queues: Work;
  private readonly follows: StreamFollows;

  constructor(options: BrokerClientOptions = {}) {
    super();
    const defaults = defaultOptions();
    this.url = options.url ?? defaultUrl();
    this.id = options.id ?? uniqueId();
    // The gateway refuses the upgrade for such a name: refused here, where the caller can see why.
    if (options.id !== undefined && !isName(options.id, MAX_SERVICE_NAME_BYTES)) {
      throw new BrokerError('INVALID_FRAME', `id (the service's name) must be 1 to ${MAX_SERVICE_NAME_BYTES} UTF-8 bytes without control characters: ${JSON.stringify(options.id)}`);
    }
    const url = toBusUrl(this.url);
    if (options.id !== undefined && !url.searchParams.has('name')) url.searchParams.set('name', options.id);
    const token = options.token ?? defaultToken();
    if (token !== undefined && !url.searchParams.has('token')) url.searchParams.set('token', token);
    const pid = options.pid === undefined ? defaultPid() : options.pid;
    if (pid !== false && pid !== null && !url.searchParams.has('pid')) url.searchParams.set('pid', String(pid));
    const report = (err: unknown) => this.transport.reportError(err);
    this.transport = new Transport({
      url: this.url,
      connectUrl: url.toString(),
      Socket: resolveWebSocket(options.WebSocket),
      reconnect: options.reconnect === false ? false : { ...defaults.reconnect, ...options.reconnect },
      maxBufferedFrames: options.maxBufferedFrames ?? defaults.maxBufferedFrames,
      receiptTimeoutMs: options.receiptTimeoutMs ?? defaults.receiptTimeoutMs,
      requestTimeoutMs: options.requestTimeoutMs ?? defaults.requestTimeoutMs,
      keepaliveMs: options.keepaliveMs ?? defaults.keepaliveMs,
      connectTimeoutMs: options.connectTimeoutMs ?? defaults.connectTimeoutMs,
      maxFrameBytes: options.maxFrameBytes ?? defaults.maxFrameBytes,
    }, {
      restore: () => {
        this.pubsub.restore();
        this.queues.restore();
        this.follows.restore();
      },
      event: (event) => this.pubsub.dispatch(event),
      task: (task, pullId) => this.queues.receive(task, pullId),
      revoke: (revoke) => this.queues.revoke(revoke),
      chunk: (chunk, bytes) => this.follows.receive(chunk, bytes),
      answer: (id, failure) => this.queues.answer(id, failure),
      lost: () => this.queues.lost(),
      closing: (err) => {
        this.pubsub.closing(err);
        this.queues.closing();
        this.follows.closing(err);
      },
      emit: (name, value) => this.emit(name, value),
      hasErrorListener: () => this.listenerCount('error') > 0,
      name: this.id,
    });
    this.pubsub = new PubSub(this.transport, options.requestTimeoutMs ?? defaults.requestTimeoutMs, report);
    this.follows = new StreamFollows(this.transport);
    this.queues = new Work(this.transport, this.pubsub, report, (revoke) => this.emit('revoked', revoke), options.traceTasks ?? defaults.traceTasks);
  }

  /** The id the gateway gave this connection (from its welcome frame). */
  get clientId(): string | null {
    return this.transport.clientId;
  }

  get connected(): boolean {
    return this.transport.isOpen;
  }

  /** Frames waiting for a connection. */
  get bufferedFrames(): number {
    return this.transport.bufferedFrames;
  }

  // ---- connection -------------------------------------------------------

  /**
   * Opens the connection. Rejects if the first attempt fails, unless
   * `{retry: true}`; once connected, the client reconnects by itself.
   */
  connect(options: ConnectOptions = {}): Promise<void> {
    return this.transport.connect(options);
  }

  /** Closes for good: pending calls reject with CLOSED; no reconnect. */
  close(): Promise<void> {
    return this.transport.close();
  }

  /**
   * Stops every worker from pulling, waits for the tasks in hand to be
   * acked or failed, then closes. Tasks that arrive meanwhile are not
   * touched: closing the connection hands them back to the queue at once.
   */
  async drain(): Promise<void> {
    await this.queues.drain();
    await this.close();
  }

  /** A round trip to the gateway; resolves with its clock (ms). */
  ping(): Promise<number> {
    return quiet(this.transport.call({ action: 'ping' }).then((answer) => Number(answer.pong)));
  }

  // ---- pub/sub ----------------------------------------------------------

  /**
   * Calls `handler` for every event whose type matches `pattern` (`*` one
   * segment, `>` one or more at the end). A handler registered under
   * several matching patterns still sees each event once. Resolves when
   * the gateway confirms, with its receipt's `offset`, `replayed`, `gap` on
   * a retained topic. `{since}` / `{last}` replay retained events first.
   * After a reconnect it resumes from the last offset handed to the
   * handler: nothing missed, nothing twice.
   */
  subscribe(pattern: string, handler: EventHandler, options: SubscribeOptions = {}): Promise<SubscribeResult> {
    return this.pubsub.subscribe(pattern, handler, options);
  }

  /** Removes `handler` (or every handler) from `pattern`; the last one out unsubscribes at the gateway. */
  unsubscribe(pattern: string, handler?: EventHandler): Promise<void> {
    return this.pubsub.unsubscribe(pattern, handler);
  }

  /**
   * Publishes an event; resolves with the gateway's receipt (`delivered`:
   * how many connections got it; `duplicate: true` when the gateway had its
   * `msgId` already). `{confirm: false}` asks for no receipt.
   */
  publish(type: string, payload: unknown, options: PublishOptions & { confirm: false }): Promise<{ delivered: null }>;
  publish(type: string, payload?: unknown, options?: PublishOptions): Promise<{ delivered: number; duplicate?: true }>;
  publish(type: string, payload?: unknown, options: PublishOptions = {}): Promise<{ delivered: number | null; duplicate?: true }> {
    return this.pubsub.publish(type, payload, options);
  }

  /**
   * Publishes with `replyTo` (this client's inbox) and a fresh
   * `correlationId`, and resolves with the first reply event. Rejects with
   * TIMEOUT when no reply comes in time.
   */
  request(type: string, payload?: unknown, options: { timeout?: number } = {}): Promise<BusEvent> {
    return this.pubsub.request(type, payload, options);
  }

  /** Answers an event that asked for a reply: publishes to its `replyTo` with its `correlationId`. */
  reply(event: BusEvent, payload?: unknown): Promise<{ delivered: number }> {
    return this.pubsub.reply(event, payload);
  }

  /** Subscribes `handler` to `pattern` and publishes what it returns as the reply of each request. */
  respond(pattern: string, handler: (event: BusEvent) => unknown): Promise<void> {
    return this.pubsub.respond(pattern, handler);
  }

  // ---- queues -----------------------------------------------------------

  /**
   * Stores a task durably; resolves with its `taskId` once the gateway has
   * stored it. With `{stream: true}` (v3) its worker may stream output to
   * followers, and it resolves with `{taskId}` to hand to `follow()`.
   */
  enqueue(queue: string, payload: unknown, options: EnqueueOptions & { stream: true }): Promise<{ taskId: string }>;
  enqueue(queue: string, payload: unknown, options?: EnqueueOptions): Promise<string>;
  enqueue(queue: string, payload: unknown, options?: EnqueueOptions): Promise<string | { taskId: string }> {
    const taskId = this.queues.enqueue(queue, payload, options);
    return options?.stream === true ? quiet(taskId.then((id) => ({ taskId: id }))) : taskId;
  }

  /**
   * The output a streamed task's worker writes (`task.write`), in order,
   * from seq `from` (default 1), as it exists and as it comes; the last item
   * carries `end` (and `result`). It resumes by itself after a reconnect,
   * from the seq after the last one it delivered. Leaving the loop unfollows.
   */
  follow(taskId: string, options: FollowOptions = {}): AsyncIterableIterator<StreamChunk> {
    return this.follows.follow(taskId, options);
  }

  /**
   * Processes tasks of `queue`: keeps `concurrency` pulls open, runs
   * `handler` on each task, acks with its return value, fails with the
   * message of what it throws, and pulls again. Never holds more than
   * `concurrency` tasks. `stop()` on the result ends it cleanly.
   */
  work(queue: string, handler: TaskHandler, options: { concurrency?: number } = {}): TaskWorker {
    return this.queues.work(queue, handler, options);
  }

  /** The seed's callback for tasks that arrive on `pull()`. */
  onTaskReceived(callback: TaskHandler): void {
    this.queues.onTaskReceived(callback);
  }

  /**
   * Asks for one task of `queue` (the seed's pull): it arrives at the
   * `onTaskReceived` callback when one is there. The pull stays open
   * across reconnects until a task comes. Throws INVALID_QUEUE at once.
   */
  pull(queue: string): void {
    this.queues.pull(queue);
  }

  /** The task is done. Rejects with LEASE_LOST, sending nothing, if it came on a connection that has since closed or the gateway revoked it. */
  ack(taskId: string, result?: unknown): Promise<void> {
    return this.queues.ack(taskId, result);
  }

  /** The attempt failed: the gateway retries it with backoff, or dead-letters it. */
  fail(taskId: string, reason = ''): Promise<void> {
    return this.queues.fail(taskId, reason);
  }

  /** Reports how far a task in hand got (as `task.progress`); rejects with UNKNOWN_TASK once the gateway revoked it. */
  progress(taskId: string, value: unknown): Promise<void> {
    return this.queues.progress(taskId, value);
  }
}
