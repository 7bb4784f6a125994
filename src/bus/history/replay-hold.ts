import { CloseCode } from '../../protocol/close-codes.js';
import { patternMatches } from '../topic.js';
import { compareOffsets, offsetOfFrame } from './offsets.js';

/** The part of a connection a hold needs: where it hangs, and how to close it. */
export interface HeldConnection {
  readonly closing: boolean;
  hold: ReplayHold | null;
  close(code: number, reason: string): void;
}

interface Held {
  type: string;
  frame: Buffer;
}

/**
 * The live events of a connection while one of its subscriptions replays
 * history. They wait here, in arrival order, so that the replay comes first;
 * each replay, when it ends, drops the ones it already sent (by offset), and
 * the last one to end sends the rest. Bounded like a socket's backlog: a
 * connection whose held events outgrow it is closed as a slow consumer.
 */
export class ReplayHold {
  private held: Held[] = [];
  private bytes = 0;
  private replays = 0;

  constructor(private readonly connection: HeldConnection, private readonly maxBytes: number) {}

  /** Holds the connection's live events until `release` is called as many times. */
  static begin(connection: HeldConnection, maxBytes: number): ReplayHold {
    const hold = connection.hold ?? new ReplayHold(connection, maxBytes);
    hold.replays++;
    connection.hold = hold;
    return hold;
  }

  push(type: string, frame: Buffer): void {
    if (this.connection.closing) return;
    this.bytes += frame.length;
    if (this.bytes > this.maxBytes) {
      this.held = [];
      this.connection.close(CloseCode.POLICY_VIOLATION, 'slow consumer');
      return;
    }
    this.held.push({ type, frame });
  }

  /**
   * One replay ended: drops the held events `alreadySent` says it replayed;
   * the last replay to end hands the rest to `send`, in order, and lets
   * live events flow again.
   */
  release(alreadySent: (type: string, frame: Buffer) => boolean, send: (frame: Buffer) => void): void {
    this.held = this.held.filter(({ type, frame }) => !alreadySent(type, frame));
    this.bytes = this.held.reduce((sum, { frame }) => sum + frame.length, 0);
    if (--this.replays > 0) return;
    this.connection.hold = null;
    const rest = this.held;
    this.held = [];
    for (const { frame } of rest) send(frame);
  }
}

/**
 * Per resumed pattern of a connection, the newest offset its replay covered.
 * A live event at or below it was replayed already: it can still arrive
 * after the replay when another gateway forwarded it (that gateway stored
 * it before the replay read the stream, and its copy crossed Redis later).
 * Such a late copy is dropped; any other event passes.
 */
export class ReplayedFloors {
  private readonly floors = new Map<string, string>();

  set(pattern: string, newest: string): void {
    this.floors.set(pattern, newest);
  }

  covers(type: string, frame: Buffer): boolean {
    let offset: string | null | undefined;
    for (const [pattern, newest] of this.floors) {
      if (!patternMatches(pattern, type)) continue;
      offset ??= offsetOfFrame(frame);
      if (offset === null) return false;
      if (compareOffsets(offset, newest) <= 0) return true;
    }
    return false;
  }
}
