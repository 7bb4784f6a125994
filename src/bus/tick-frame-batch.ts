/** A connection whose event frames of one tick wait to leave together. */
export interface FrameSink {
  /** The frames gathered since the last write, and their bytes; null when none wait. */
  takeFrames(): { frames: Buffer[]; bytes: number } | null;
  /** Writes `frames` in order; `joined` is their bytes end to end. */
  writeFrames(frames: Buffer[], joined: Buffer): void;
}

/**
 * Writes the event frames each connection gathered in a tick as one buffer
 * at the tick's end. Connections that got the same frames in the same
 * order (every subscriber of one busy topic) share one joined buffer: the
 * bytes are copied once per tick, not once per subscriber, and each socket
 * gets a single write with a single piece instead of one per frame.
 */
export class TickFrameBatch {
  private readonly waiting: FrameSink[] = [];
  private readonly flush = (): void => {
    // Joined buffers of this tick by their first frame, to find an identical run.
    const joined = new Map<Buffer, { frames: Buffer[]; bytes: Buffer }[]>();
    for (const sink of this.waiting) {
      const taken = sink.takeFrames();
      if (!taken) continue;
      const { frames } = taken;
      const first = frames[0] as Buffer;
      if (frames.length === 1) {
        sink.writeFrames(frames, first);
        continue;
      }
      const runs = joined.get(first);
      let run = runs?.find((candidate) => sameFrames(candidate.frames, frames));
      if (!run) {
        run = { frames, bytes: joinFrames(frames, taken.bytes) };
        if (runs) runs.push(run);
        else joined.set(first, [run]);
      }
      sink.writeFrames(frames, run.bytes);
    }
    this.waiting.length = 0;
  };

  /** `sink` has its first frame waiting: they are all written when this tick ends. */
  add(sink: FrameSink): void {
    if (this.waiting.push(sink) === 1) process.nextTick(this.flush);
  }
}

/** `frames` end to end (`bytes` long): the frame itself when there is one. */
export function joinFrames(frames: Buffer[], bytes: number): Buffer {
  return frames.length === 1 ? frames[0] as Buffer : Buffer.concat(frames, bytes);
}

function sameFrames(a: Buffer[], b: Buffer[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
