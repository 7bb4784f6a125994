import type { ServerResponse } from 'node:http';
import { encodeBinaryFrame } from '../bus/binary-frame.js';
import type { BusConnection } from '../bus/bus-connection.js';
import type { StreamEntry } from './task-stream-store.js';

/** Where a follower's entries go: a /bus connection, or an HTTP response (Server-Sent Events). */
export interface StreamSink {
  /** `traceparent`: the task's, on the first frame of a follow only. */
  write(taskId: string, entry: StreamEntry, traceparent?: string): void;
  /** Entries before `seq` are no longer kept. */
  gap(taskId: string, seq: number, traceparent?: string): void;
  /** Bytes written to it that its peer has not taken yet. */
  readonly backlogBytes: number;
  readonly gone: boolean;
  /** Calls back once its backlog drained (or it is gone). */
  whenDrained(callback: () => void): void;
}

/** A socket whose 'drain' may be missed (its buffer was never over the high-water mark) is looked at again after this. */
const DRAIN_RECHECK_MS = 50;

interface Drainable {
  once(event: 'drain', listener: () => void): unknown;
  off(event: 'drain', listener: () => void): unknown;
}

function whenDrained(stream: Partial<Drainable> | null, callback: () => void): void {
  let fired = false;
  const fire = (): void => {
    if (fired) return;
    fired = true;
    clearTimeout(timer);
    stream?.off?.('drain', fire);
    callback();
  };
  const timer = setTimeout(fire, DRAIN_RECHECK_MS);
  stream?.once?.('drain', fire);
}

/** Bus frames (v3 §3): `{"chunk":{…}}` text frames, binary frames for binary chunks. */
export class BusStreamSink implements StreamSink {
  constructor(readonly connection: BusConnection) {}

  write(taskId: string, entry: StreamEntry, traceparent?: string): void {
    const id = JSON.stringify(taskId);
    const trace = traceparent === undefined ? '' : `,"traceparent":${JSON.stringify(traceparent)}`;
    if (entry.kind === 'chunk') {
      this.connection.sendRaw(`{"chunk":{"taskId":${id},"seq":${entry.seq},"attempt":${entry.attempt}${trace},"data":${entry.json}}}`);
    } else if (entry.kind === 'binary') {
      const header = { taskId, seq: entry.seq, attempt: entry.attempt, ...(traceparent === undefined ? {} : { traceparent }) };
      this.connection.sendBinary(encodeBinaryFrame({ chunk: header }, entry.data));
    } else {
      const result = entry.end === 'ok' ? `,"result":${entry.result ?? 'null'}` : '';
      this.connection.sendRaw(`{"chunk":{"taskId":${id},"seq":${entry.seq}${trace},"end":${JSON.stringify(entry.end)}${result}}}`);
    }
  }

  gap(taskId: string, seq: number, traceparent?: string): void {
    this.connection.send({ chunk: { taskId, seq, gap: true, ...(traceparent === undefined ? {} : { traceparent }) } });
  }

  get backlogBytes(): number {
    return this.connection.unsentBytes;
  }

  get gone(): boolean {
    return this.connection.closing;
  }

  whenDrained(callback: () => void): void {
    whenDrained(this.connection.stream as Partial<Drainable> | null, callback);
  }
}

/**
 * Server-Sent Events (v3 §4): `id:` = seq, `event: chunk|binary|end|gap`;
 * the response ends after `end`. The trace context goes in the response's
 * `traceparent` header instead of a frame.
 */
export class SseStreamSink implements StreamSink {
  constructor(private readonly response: ServerResponse) {}

  write(_taskId: string, entry: StreamEntry): void {
    if (entry.kind === 'chunk') this.event(entry.seq, 'chunk', entry.json);
    else if (entry.kind === 'binary') this.event(entry.seq, 'binary', entry.data.toString('base64'));
    else {
      const result = entry.end === 'ok' ? `,"result":${entry.result ?? 'null'}` : '';
      this.event(entry.seq, 'end', `{"end":${JSON.stringify(entry.end)}${result}}`);
      this.response.end();
    }
  }

  /** Without an `id:`: a reconnecting EventSource resumes after the last chunk it had, not past the gap. */
  gap(_taskId: string, seq: number): void {
    this.response.write(`event: gap\ndata: {"seq":${seq}}\n\n`);
  }

  get backlogBytes(): number {
    return this.response.writableLength;
  }

  get gone(): boolean {
    return this.response.destroyed || this.response.writableEnded;
  }

  whenDrained(callback: () => void): void {
    whenDrained(this.response, callback);
  }

  /** JSON text has no line breaks, and base64 none: each is one `data:` line. */
  private event(seq: number, name: string, data: string): void {
    this.response.write(`id: ${seq}\nevent: ${name}\ndata: ${data}\n\n`);
  }
}
