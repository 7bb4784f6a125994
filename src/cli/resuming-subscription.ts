import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';

type Frame = Record<string, unknown>;

export interface ResumeOptions {
  /** The /bus WebSocket URL. */
  busUrl: string;
  token: string | undefined;
  name: string;
  pattern: string;
  /** Where to start: after this offset, or the last N events. */
  start: { since: string } | { last: number };
  onEvent(event: Frame): void;
  /** Status lines for people (stderr). */
  onStatus(line: string): void;
  /** Resolves to stop. */
  stopped: Promise<void>;
}

const MAX_BACKOFF_MS = 5000;

/**
 * `brainstem sub --since/--last`: a subscription on a retained pattern that
 * resumes from the last offset it printed after every reconnect, so that a
 * gateway restart loses and repeats nothing. Speaks the wire directly; the
 * clients do the same on their own (docs/bus-protocol.md, "Resume").
 */
export async function followRetained(options: ResumeOptions): Promise<void> {
  let start: Frame = 'since' in options.start ? { since: options.start.since } : { last: options.start.last };
  let stopping = false;
  let current: WebSocket | null = null;
  void options.stopped.then(() => {
    stopping = true;
    current?.close(1000);
  });
  let backoff = 100;
  let first = true;
  while (!stopping) {
    const outcome = await new Promise<'closed' | Error>((resolve) => {
      const headers: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};
      const url = new URL(options.busUrl);
      url.searchParams.set('name', options.name);
      const socket = new WebSocket(url, { headers });
      current = socket;
      socket.on('open', () => {
        socket.send(JSON.stringify({ action: 'subscribe', topic: options.pattern, id: 'resume', ...start }));
      });
      socket.on('message', (data) => {
        const frame = JSON.parse(data.toString()) as Frame;
        if ('event' in frame) {
          const event = frame.event as Frame;
          if (typeof event.offset === 'string') start = { since: event.offset };
          options.onEvent(event);
        } else if (frame.id === 'resume' && 'error' in frame) {
          resolve(new Error(String(frame.error)));
          socket.close(1000);
        } else if (frame.id === 'resume') {
          backoff = 100;
          if (!('since' in start)) start = { since: String(frame.offset) };
          const note = `${String(frame.replayed)} replayed${frame.gap ? ', some trimmed before they could be (gap)' : ''}`;
          options.onStatus(`${first ? 'subscribed to' : 'resumed'} ${options.pattern} at ${options.busUrl} (${note})`);
          first = false;
        }
      });
      socket.on('error', () => {});
      socket.on('close', () => resolve(first ? new Error(`cannot subscribe at ${options.busUrl}: the connection closed`) : 'closed'));
    });
    if (outcome instanceof Error) throw outcome;
    if (stopping) break;
    options.onStatus(`disconnected; resuming from ${'since' in start ? String(start.since) : 'the start'}`);
    await sleep(backoff);
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  }
}
