/**
 * The binary frame of bus protocol v3 (streamed task output): a 4-byte
 * big-endian length L, L bytes of UTF-8 JSON header, then the raw bytes.
 * No Node imports: the clients (browser included) share this file.
 */

const HEADER_LENGTH_BYTES = 4;

export interface BinaryFrame {
  header: Record<string, unknown>;
  body: Uint8Array;
}

export function encodeBinaryFrame(header: object, body: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const frame = new Uint8Array(HEADER_LENGTH_BYTES + json.length + body.length);
  new DataView(frame.buffer).setUint32(0, json.length, false);
  frame.set(json, HEADER_LENGTH_BYTES);
  frame.set(body, HEADER_LENGTH_BYTES + json.length);
  return frame;
}

/** The header and bytes of a binary frame; a string naming what is wrong with a malformed one. */
export function decodeBinaryFrame(frame: Uint8Array): BinaryFrame | string {
  if (frame.length < HEADER_LENGTH_BYTES) return 'a binary frame starts with a 4-byte header length';
  const length = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(0, false);
  if (length > frame.length - HEADER_LENGTH_BYTES) return 'the header length runs past the end of the binary frame';
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(frame.subarray(HEADER_LENGTH_BYTES, HEADER_LENGTH_BYTES + length)));
  } catch {
    return 'the header of a binary frame must be UTF-8 JSON';
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return 'the header of a binary frame must be a JSON object';
  return { header: header as Record<string, unknown>, body: frame.subarray(HEADER_LENGTH_BYTES + length) };
}
