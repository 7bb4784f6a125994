import { BusError, type BusEvent } from './protocol.js';
import { retainedFrame } from './history/offsets.js';
import { encodeTextFrame, encodeTextFrameOf, framePayload } from '../streams/ws-adapter.js';

/**
 * The event's JSON, made once per publish. A payload nested too deeply for
 * JSON.stringify (it recurses; a 1 MiB frame of brackets overflows the
 * stack) is the publisher's mistake: refused as INVALID_FRAME before anyone
 * gets it.
 */
export function eventJson(event: BusEvent): string {
  try {
    return JSON.stringify(event);
  } catch (err) {
    if (err instanceof RangeError) throw new BusError('INVALID_FRAME', 'message is nested too deeply');
    throw err;
  }
}

/**
 * One published event as it goes out: the `{"event": …}` message (what
 * other instances get) and the complete WebSocket frame around it (what
 * every local subscriber's socket gets, the same bytes for all). Each is
 * built at its first use, once.
 */
export class EventFrame {
  private built: Buffer | null = null;
  private message: Buffer | null;

  private constructor(private readonly text: string | null, message: Buffer | null) {
    this.message = message;
  }

  /** An event published here: `offset` is its stream offset when retained, '' when not. */
  static of(json: string, offset: string): EventFrame {
    if (offset === '') return new EventFrame(`{"event":${json}}`, null);
    return new EventFrame(null, retainedFrame(json, offset));
  }

  /** An event another instance published, already serialized there. */
  static fromPeer(message: Buffer): EventFrame {
    return new EventFrame(null, message);
  }

  /** The `{"event": …}` message. */
  get payload(): Buffer {
    return this.message ??= framePayload(this.wire);
  }

  /** The WebSocket frame carrying it. */
  get wire(): Buffer {
    return this.built ??= this.text === null ? encodeTextFrameOf(this.message as Buffer) : encodeTextFrame(this.text);
  }
}
