import type { WebSocket } from 'ws';
import { BusError } from '../bus/protocol.js';
import type { ErrorReply } from '../protocol/error-codes.js';
import type { BeatReply } from './heartbeat-monitor.js';

/** A frame as the original took it: any object, its `pid` and `name` checked by the beat. */
export type BeatInput = { pid: unknown; name: unknown };

const INVALID_JSON = { error: 'invalid json', code: 'INVALID_JSON' } satisfies ErrorReply;
const INTERNAL = { error: 'internal error', code: 'INTERNAL' } satisfies ErrorReply;

function beatOf(data: Buffer): BeatInput | null {
  let frame: unknown;
  try {
    frame = JSON.parse(data.toString());
  } catch {
    return null;
  }
  const input = typeof frame === 'object' && frame !== null && !Array.isArray(frame)
    ? frame as { pid?: unknown; name?: unknown }
    : {};
  return { pid: input.pid, name: input.name };
}

/**
 * The WebSocket `/heartbeat`: each frame is a beat, answered with the
 * beat's reply or, as over HTTP, `{error, code}`; the socket stays open.
 * Answers leave in the order the frames came, one beat at a time.
 */
export function answerBeats(
  socket: WebSocket,
  beat: (input: BeatInput) => Promise<BeatReply>,
  log: { error(obj: object, msg: string): void; debug(obj: object, msg: string): void },
): void {
  let answered: Promise<void> = Promise.resolve();
  const reply = (body: object) => {
    if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(body));
  };
  const refuse = (err: unknown) => {
    if (err instanceof BusError) return reply({ error: err.message, code: err.code } satisfies ErrorReply);
    log.error({ err }, 'heartbeat failed');
    reply(INTERNAL);
  };
  socket.on('message', (data: Buffer) => {
    const input = beatOf(data);
    answered = answered.then(() => (input === null ? reply(INVALID_JSON) : beat(input).then(reply, refuse)));
  });
  socket.on('error', (err) => log.debug({ err }, 'heartbeat socket error'));
}
