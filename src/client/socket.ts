/**
 * The slice of the WebSocket API the client uses: the browser's native
 * WebSocket and the `ws` package both provide it, so the client takes the
 * implementation as a parameter instead of importing either.
 */
export interface SocketLike {
  readonly readyState: number;
  send(data: string | Uint8Array): void;
  /** 'arraybuffer': binary frames (v3 stream chunks) arrive as ArrayBuffer in browsers and `ws` alike. */
  binaryType?: string;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
}

export type SocketConstructor = new (url: string) => SocketLike;

export const OPEN = 1;

let defaultImplementation: SocketConstructor | null = null;

/** Sets the WebSocket used when a client is given none (the Node entry sets `ws`). */
export function setDefaultWebSocket(implementation: SocketConstructor): void {
  defaultImplementation = implementation;
}

/** The given implementation, else the default, else the platform's own. */
export function resolveWebSocket(given?: SocketConstructor): SocketConstructor {
  const native = (globalThis as { WebSocket?: unknown }).WebSocket as SocketConstructor | undefined;
  const implementation = given ?? defaultImplementation ?? native;
  if (!implementation) {
    throw new Error('no WebSocket implementation: pass {WebSocket} or import brainstem/client in Node');
  }
  return implementation;
}

/** Closes at once: `ws` has terminate(), which does not wait for a dead peer. */
export function dropSocket(socket: SocketLike, code: number, reason: string): void {
  socket.onopen = null;
  socket.onmessage = null;
  socket.onclose = null;
  socket.onerror = () => {};
  const terminate = (socket as { terminate?: () => void }).terminate;
  try {
    if (typeof terminate === 'function') terminate.call(socket);
    else socket.close(code, reason);
  } catch {
    // Already closed or never opened: nothing left to release.
  }
}
