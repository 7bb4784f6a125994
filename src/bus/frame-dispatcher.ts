import { decodeBinaryFrame } from './binary-frame.js';
import type { BusConnection } from './bus-connection.js';
import type { FrameRateLimiter } from './frame-rate-limiter.js';
import { MAX_JSON_DEPTH, nestsDeeperThan } from './json-depth.js';
import { CloseCode } from '../protocol/close-codes.js';
import type { ErrorCode } from '../protocol/error-codes.js';
import { BusError, type ClientFrame } from './protocol.js';

/** Extra fields of a receipt (`{ok:true, id, …}`), e.g. `taskId`. */
export type Receipt = Record<string, unknown>;

/** Returned by a handler that answered the frame itself (`ping` answers `pong`). */
export const ANSWERED = Symbol('answered');

type Outcome = void | Receipt | typeof ANSWERED;
export type ActionOutcome = Outcome;

/** Handles one action; throws (or rejects with) a BusError to refuse it. */
export type ActionHandler = (connection: BusConnection, frame: ClientFrame) => Outcome | Promise<Outcome>;

/** Handles one binary frame (v3): its JSON header as the frame, and the raw bytes after it. */
export type BinaryActionHandler = (connection: BusConnection, frame: ClientFrame, body: Uint8Array) => Outcome | Promise<Outcome>;

/** The slice of pino the bus logs through. */
export interface BusLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  isLevelEnabled?(level: string): boolean;
}

function errorFrame(code: ErrorCode, message: string, id: unknown): object {
  return id === undefined ? { error: message, code } : { error: message, code, id };
}

function isPromise(value: unknown): value is Promise<Outcome> {
  return typeof (value as Promise<unknown> | undefined)?.then === 'function';
}

/**
 * Parses client frames and routes them to the handler of their `action`.
 * The organs register their actions (pub/sub here, queues in theirs); the
 * dispatcher owns what is common: JSON, `id` receipts, errors, rate limits.
 */
export class FrameDispatcher {
  private readonly handlers = new Map<string, ActionHandler>();
  private readonly binaryHandlers = new Map<string, BinaryActionHandler>();

  constructor(private readonly log: BusLogger, private readonly limiter: FrameRateLimiter | null) {}

  register(action: string, handler: ActionHandler): void {
    if (this.handlers.has(action)) throw new Error(`action ${action} is already registered`);
    this.handlers.set(action, handler);
  }

  /** An action that binary frames may carry (bus-protocol v3: `chunk`). */
  registerBinary(action: string, handler: BinaryActionHandler): void {
    if (this.binaryHandlers.has(action)) throw new Error(`binary action ${action} is already registered`);
    this.binaryHandlers.set(action, handler);
  }

  /** One binary frame of one client: a 4-byte header length, a JSON header naming the action, raw bytes. */
  handleBinary(connection: BusConnection, raw: Uint8Array): void {
    try {
      this.routeBinary(connection, raw);
    } catch (err) {
      this.refuse(connection, undefined, err);
    }
  }

  /**
   * One frame of one client. Whatever it raises stays with that frame
   * (INTERNAL, logged): it runs in the socket's event loop turn, where an
   * escaped error would end the process for every client.
   */
  handle(connection: BusConnection, raw: Buffer | string): void {
    try {
      this.route(connection, raw);
    } catch (err) {
      this.refuse(connection, undefined, err);
    }
  }

  /** Counts the frame; false (answered) when the connection goes over its rate. */
  private admitted(connection: BusConnection): boolean {
    connection.framesIn++;
    if (!this.limiter) return true;
    const verdict = this.limiter.check(connection);
    if (verdict === 'accept') return true;
    if (verdict === 'close') connection.close(CloseCode.POLICY_VIOLATION, 'rate limited');
    else connection.send(errorFrame('RATE_LIMITED', 'rate limited', undefined));
    return false;
  }

  private routeBinary(connection: BusConnection, raw: Uint8Array): void {
    if (!this.admitted(connection)) return;
    const decoded = decodeBinaryFrame(raw);
    if (typeof decoded === 'string') {
      connection.send(errorFrame('INVALID_FRAME', decoded, undefined));
      return;
    }
    const frame = decoded.header as ClientFrame;
    const { id, action } = frame;
    if (id !== undefined && typeof id !== 'string' && typeof id !== 'number') {
      connection.send(errorFrame('INVALID_FRAME', 'id must be a string or a number', undefined));
      return;
    }
    const handler = typeof action === 'string' ? this.binaryHandlers.get(action) : undefined;
    if (!handler) {
      connection.send(errorFrame('INVALID_FRAME', 'binary frames carry only chunk (bus protocol v3)', id));
      return;
    }
    this.run(connection, id, () => handler(connection, frame, decoded.body));
  }

  private route(connection: BusConnection, raw: Buffer | string): void {
    if (!this.admitted(connection)) return;
    let frame: unknown;
    try {
      frame = JSON.parse(typeof raw === 'string' ? raw : raw.toString('utf8'));
    } catch {
      connection.send(errorFrame('INVALID_JSON', 'invalid json', undefined));
      return;
    }
    if (typeof frame !== 'object' || frame === null || Array.isArray(frame)) {
      connection.send(errorFrame('INVALID_FRAME', 'frame must be a JSON object', undefined));
      return;
    }
    const { id, action } = frame as ClientFrame;
    if (id !== undefined && typeof id !== 'string' && typeof id !== 'number') {
      connection.send(errorFrame('INVALID_FRAME', 'id must be a string or a number', undefined));
      return;
    }
    if (nestsDeeperThan(raw)) {
      connection.send(errorFrame('INVALID_FRAME', `frame nests deeper than ${MAX_JSON_DEPTH} levels`, id));
      return;
    }
    const handler = typeof action === 'string' ? this.handlers.get(action) : undefined;
    if (!handler) {
      connection.send(errorFrame('UNKNOWN_ACTION', 'unknown action', id));
      return;
    }
    this.run(connection, id, () => handler(connection, frame as ClientFrame));
  }

  /** Runs a handler and answers its frame: the receipt, or the refusal. */
  private run(connection: BusConnection, id: string | number | undefined, call: () => Outcome | Promise<Outcome>): void {
    try {
      const result = call();
      if (isPromise(result)) {
        result.then((receipt) => this.answer(connection, id, receipt), (err: unknown) => this.refuse(connection, id, err))
          .catch((err: unknown) => this.log.error({ err, clientId: connection.id }, 'bus: answering a frame failed'));
      } else {
        this.answer(connection, id, result);
      }
    } catch (err) {
      this.refuse(connection, id, err);
    }
  }

  private answer(connection: BusConnection, id: string | number | undefined, receipt: Outcome): void {
    if (id === undefined || receipt === ANSWERED) return;
    connection.send(receipt ? { ok: true, id, ...receipt } : { ok: true, id });
  }

  private refuse(connection: BusConnection, id: string | number | undefined, err: unknown): void {
    if (err instanceof BusError) {
      connection.send(errorFrame(err.code, err.message, id));
      return;
    }
    // JSON nested deeper than a recursive walk (stringify, a library's clone) can go.
    if (err instanceof RangeError && /call stack/i.test(err.message)) {
      connection.send(errorFrame('INVALID_FRAME', 'frame is nested too deeply', id));
      return;
    }
    this.log.error({ err, clientId: connection.id }, 'bus action failed');
    connection.send(errorFrame('INTERNAL', 'internal error: the frame was not processed', id));
  }
}
