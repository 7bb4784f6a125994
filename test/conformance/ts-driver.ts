import { BrokerClient, BrokerError, defaultOptions, type BrokerClientOptions, type PublishOptions, type Task, type TaskWorker } from '../../src/client/index.js';
import { CLOSE_GRACE_MS, HELD_RECEIPT_ACTIONS, PULL_RETRY_CODES, PULL_RETRY_INITIAL_MS, PULL_RETRY_MAX_MS, STABLE_CONNECTION_MS, WELCOME_WAIT_MS } from '../../src/client/defaults.js';
import type { ClientDriver, ClientSettings, Note, Outcome } from './driver.js';

/** What a driver reports of a thrown error: the code, and whether it is the client's BrokerError. */
function describe(err: unknown): Outcome {
  return {
    error: {
      code: err instanceof BrokerError ? err.code : ((err as { code?: unknown })?.code as string | undefined) ?? null,
      brokerError: err instanceof BrokerError,
      message: err instanceof Error ? err.message : String(err),
    },
  };
}

interface Held {
  task: Task;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

/** The TypeScript client, driven in-process. */
export class TsDriver implements ClientDriver {
  readonly language = 'typescript';
  private readonly client: BrokerClient;
  private readonly workers = new Map<string, TaskWorker>();
  private readonly held = new Map<string, Held>();
  private readonly settled = new Set<number>();
  private counter = 0;

  constructor(url: string, settings: ClientSettings, private readonly note: (note: Note) => void) {
    const options: BrokerClientOptions = { url, id: settings.name };
    if (settings.reconnectInitialDelayMs !== undefined || settings.reconnectMaxDelayMs !== undefined) {
      options.reconnect = {
        ...(settings.reconnectInitialDelayMs === undefined ? {} : { initialDelayMs: settings.reconnectInitialDelayMs }),
        ...(settings.reconnectMaxDelayMs === undefined ? {} : { maxDelayMs: settings.reconnectMaxDelayMs }),
      };
    }
    if (settings.maxBufferedFrames !== undefined) options.maxBufferedFrames = settings.maxBufferedFrames;
    if (settings.receiptTimeoutMs !== undefined) options.receiptTimeoutMs = settings.receiptTimeoutMs;
    if (settings.keepaliveMs !== undefined) options.keepaliveMs = settings.keepaliveMs;
    if (settings.pid !== undefined) options.pid = settings.pid;
    if (settings.traceTasks !== undefined) options.traceTasks = settings.traceTasks;
    this.client = new BrokerClient(options);
    this.client.on('connected', () => note({ kind: 'connected' }));
    this.client.on('disconnected', ({ code }) => note({ kind: 'disconnected', code }));
    this.client.on('revoked', (revoke) => note({ kind: 'revoked', ...revoke }));
    this.client.on('reconnecting', ({ attempt }) => note({ kind: 'reconnecting', attempt }));
    this.client.on('error', (err) => note({ kind: 'error', code: err instanceof BrokerError ? err.code : null }));
    this.client.onTaskReceived((task) => note({ kind: 'task', worker: null, task: task as unknown as Record<string, unknown> }));
  }

  start(op: string, args: Record<string, unknown>): { n: number; outcome: Promise<Outcome> } {
    const n = ++this.counter;
    let promise: Promise<unknown>;
    try {
      promise = Promise.resolve(this.run(op, args));
    } catch (err) {
      promise = Promise.reject(err);
    }
    const outcome = promise.then((ok) => ({ ok: ok ?? {} }), describe).finally(() => this.settled.add(n));
    return { n, outcome };
  }

  isSettled(n: number): Promise<boolean> {
    return Promise.resolve(this.settled.has(n));
  }

  async stop(): Promise<void> {
    await this.client.close();
  }

  /** Every item of a followed stream, as neutral items: a binary chunk's bytes as a list of numbers. */
  private async follow(taskId: string, from: number): Promise<{ chunks: Record<string, unknown>[] }> {
    const chunks: Record<string, unknown>[] = [];
    for await (const chunk of this.client.follow(taskId, { from })) {
      const { data, ...rest } = chunk;
      chunks.push(data instanceof Uint8Array ? { ...rest, bytes: [...data] } : 'data' in chunk ? { ...rest, data } : rest);
    }
    return { chunks };
  }

  private run(op: string, a: Record<string, unknown>): unknown {
    const c = this.client;
    switch (op) {
      case 'connect':
        return c.connect().then(() => ({ connected: c.connected }));
      case 'close':
        return c.close();
      case 'drain':
        return c.drain();
      case 'defaults': {
        // What the client uses, by the contract's row names.
        const d = defaultOptions();
        return {
          reconnectInitialDelayMs: d.reconnect.initialDelayMs,
          reconnectMaxDelayMs: d.reconnect.maxDelayMs,
          stableConnectionMs: STABLE_CONNECTION_MS,
          connectTimeoutMs: d.connectTimeoutMs,
          welcomeWaitMs: WELCOME_WAIT_MS,
          keepaliveMs: d.keepaliveMs,
          closeGraceMs: CLOSE_GRACE_MS,
          maxBufferedFrames: d.maxBufferedFrames,
          maxFrameBytes: d.maxFrameBytes,
          receiptTimeoutMs: d.receiptTimeoutMs,
          requestTimeoutMs: d.requestTimeoutMs,
          pullRetryInitialMs: PULL_RETRY_INITIAL_MS,
          pullRetryMaxMs: PULL_RETRY_MAX_MS,
          pullRetryCodes: [...PULL_RETRY_CODES].sort(),
          heldReceiptActions: [...HELD_RECEIPT_ACTIONS].sort(),
          traceTasks: d.traceTasks,
        };
      }
      case 'state':
        return { connected: c.connected, bufferedFrames: c.bufferedFrames };
      case 'ping':
        return c.ping().then((pong) => ({ pong }));
      case 'subscribe': {
        const tag = String(a.tag ?? a.pattern);
        const options = {
          ...(a.since === undefined ? {} : { since: String(a.since) }),
          ...(a.last === undefined ? {} : { last: Number(a.last) }),
        };
        return c.subscribe(String(a.pattern), (event) => this.note({ kind: 'event', tag, event: event as unknown as Record<string, unknown> }), options);
      }
      case 'unsubscribe':
        return c.unsubscribe(String(a.pattern));
      case 'publish': {
        const options = { ...(a.opts as Record<string, unknown> | undefined), ...(a.confirm === false ? { confirm: false } : {}) };
        return c.publish(String(a.type), a.payload, options as PublishOptions).then((receipt) => ({ delivered: receipt.delivered }));
      }
      case 'request':
        return c.request(String(a.type), a.payload, a.timeoutMs === undefined ? {} : { timeout: Number(a.timeoutMs) })
          .then((reply) => ({ reply }));
      case 'respond':
        return c.respond(String(a.pattern), (event) => ({ echo: event.payload }));
      case 'enqueue': {
        const opts = { ...(a.opts as Record<string, unknown> | undefined) };
        if (a.onProgress === true) {
          opts.onProgress = (progress: unknown, event: { correlationId?: unknown }) =>
            this.note({ kind: 'progress', taskId: String(event.correlationId), progress });
        }
        return c.enqueue(String(a.queue), a.payload, a.opts === undefined && a.onProgress === undefined ? undefined : opts)
          .then((taskId: string | { taskId: string }) => (typeof taskId === 'string' ? { taskId } : taskId));
      }
      case 'pid':
        return { pid: String(process.pid) };
      case 'progress': {
        const held = this.held.get(String(a.taskId));
        return (held?.task.progress ? held.task.progress(a.value) : c.progress(String(a.taskId), a.value)).then(() => ({}));
      }
      case 'write': {
        const held = this.held.get(String(a.taskId));
        if (!held?.task.write) throw new Error(`no task ${String(a.taskId)} in hand`);
        return held.task.write(Array.isArray(a.bytes) ? Uint8Array.from(a.bytes as number[]) : a.data).then((seq) => ({ seq }));
      }
      case 'follow':
        return this.follow(String(a.taskId), a.from === undefined ? 1 : Number(a.from));
      case 'pull':
        return c.pull(String(a.queue));
      case 'ack':
        return c.ack(String(a.taskId), a.result);
      case 'fail':
        return c.fail(String(a.taskId), a.reason === undefined ? undefined : String(a.reason));
      case 'work': {
        const name = String(a.worker ?? a.queue);
        const mode = String(a.mode ?? 'hold');
        const worker = c.work(String(a.queue), (task: Task) => {
          this.note({ kind: 'task', worker: name, task: task as unknown as Record<string, unknown> });
          if (mode === 'ack') return a.result ?? null;
          if (mode === 'until-revoked') {
            return new Promise((resolve) => task.signal?.addEventListener('abort', () => resolve({ done: task.signal?.reason })));
          }
          if (mode === 'publish') return c.publish(String(a.publishType), task.payload).then(() => null);
          if (mode === 'fail') throw new Error(String(a.reason ?? 'failed'));
          return new Promise((resolve, reject) => {
            this.held.set(task.id, { task, resolve, reject });
            // As a handler should: stop once the gateway revokes the task.
            task.signal?.addEventListener('abort', () => {
              this.held.delete(task.id);
              reject(new Error(String(task.signal?.reason)));
            });
          });
        }, { concurrency: Number(a.concurrency ?? 1) });
        this.workers.set(name, worker);
        return undefined;
      }
      case 'release': {
        const held = this.held.get(String(a.taskId));
        if (!held) throw new Error(`no task ${String(a.taskId)} in hand`);
        this.held.delete(String(a.taskId));
        if (a.fail !== undefined) held.reject(new Error(String(a.fail)));
        else held.resolve(a.result ?? null);
        return undefined;
      }
      case 'stop': {
        const worker = this.workers.get(String(a.worker));
        if (!worker) throw new Error(`no worker ${String(a.worker)}`);
        return worker.stop();
      }
      default:
        throw new Error(`the TypeScript driver has no op ${op}`);
    }
  }
}
