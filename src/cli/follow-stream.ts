import { BrokerError, type BrokerClient, type StreamChunk } from '../client/index.js';

/** `brainstem follow`'s exit status by how the task's stream ended (1 stays every other failure's). */
export const FOLLOW_EXIT_STATUS = { ok: 0, failed: 2, cancelled: 3 } as const;

export interface FollowOutput {
  /** One line on stdout. */
  line(text: string): void;
  /** Text or bytes on stdout, as they are (`--raw`). */
  raw(data: string | Uint8Array): void;
  /** A line for people, on stderr. */
  status(text: string): void;
}

export interface FollowCommand {
  taskId: string;
  from: number;
  /** Chunks as their bytes and text on stdout instead of one JSON line each. */
  raw: boolean;
  /** Resolves to stop following (Ctrl-C, a closed stdout). */
  stopped: Promise<void>;
}

/**
 * One JSON line per item of the stream, without the taskId (the command's
 * argument): `{seq, attempt, data}`, a binary chunk's bytes as `base64`,
 * `{seq, gap: true}`, and last `{seq, end, result}`.
 */
export function jsonLineOf(item: StreamChunk): string {
  if (item.gap) return JSON.stringify({ seq: item.seq, gap: true });
  if (item.end !== undefined) return JSON.stringify({ seq: item.seq, end: item.end, ...(item.end === 'ok' ? { result: item.result ?? null } : {}) });
  if (item.data instanceof Uint8Array) {
    return JSON.stringify({ seq: item.seq, attempt: item.attempt, base64: Buffer.from(item.data.buffer, item.data.byteOffset, item.data.byteLength).toString('base64') });
  }
  return JSON.stringify({ seq: item.seq, attempt: item.attempt, data: item.data });
}

/** `--raw`: a string chunk's text as it is (tokens join up), bytes as they are, any other JSON value as a line of JSON. */
function writeRaw(output: FollowOutput, data: unknown): void {
  if (data instanceof Uint8Array || typeof data === 'string') output.raw(data);
  else output.raw(`${JSON.stringify(data)}\n`);
}

/**
 * `brainstem follow TASK_ID`: prints a streamed task's output (bus
 * protocol v3) as it comes, resuming after a reconnect from the seq after
 * the last one printed (the client does), and answers the exit status its
 * end calls for; stopped before the end, 0.
 */
export async function followStream(client: BrokerClient, command: FollowCommand, output: FollowOutput): Promise<number> {
  let stopping = false;
  void command.stopped.then(() => {
    stopping = true;
    // Fails the follow with CLOSED, which ends the loop below.
    void client.close();
  });
  try {
    for await (const item of client.follow(command.taskId, { from: command.from })) {
      if (!command.raw) output.line(jsonLineOf(item));
      if (item.gap) {
        output.status(`chunks before seq ${item.seq} are no longer kept (gap)`);
      } else if (item.end === 'ok') {
        if (command.raw) output.status(`ended ok; result ${JSON.stringify(item.result ?? null)}`);
        return FOLLOW_EXIT_STATUS.ok;
      } else if (item.end !== undefined) {
        output.status(`task ${command.taskId} ended ${item.end}`);
        return FOLLOW_EXIT_STATUS[item.end];
      } else if (command.raw) {
        writeRaw(output, item.data);
      }
    }
    throw new Error(`the stream of task ${command.taskId} stopped before its end`);
  } catch (err) {
    if (stopping) return 0;
    // The gateway's code tells a task without a stream (UNKNOWN_TASK) from a refusal (FORBIDDEN).
    if (err instanceof BrokerError) throw new BrokerError(err.code, `${err.message} (${err.code})`);
    throw err;
  }
}
