import { once } from 'node:events';
import fc from 'fast-check';
import WebSocket from 'ws';
import type { Findings, FuzzTarget } from './frame-fuzzer.js';
import { hostileString, hostileValue } from './hostile-values.js';

/** A path segment: hostile text, percent-encoded as a client would (or left raw). */
const segment = fc.oneof(
  hostileString.map((s) => {
    try {
      return encodeURIComponent(s);
    } catch {
      return 'lone%ED%A0%80'; // a lone surrogate cannot be encoded: its WTF-8 bytes instead
    }
  }),
  fc.constantFrom('%00', '%ED%A0%80', '%FF', '%', '..', '%2e%2e', '__proto__', 'constructor', '%E2%80%AE', 'x'.repeat(400)),
);

const body = fc.oneof(
  hostileValue.map((v) => JSON.stringify(v) ?? 'null'),
  fc.constantFrom('{', '{"task":1,"opts":{"__proto__":{"attempts":1}}}', '{"pid":1,"name":"\\ud800"}', '{"pid":"1","name":"a\\u0000"}',
    '{"task":{"x":1},"opts":{"jobId":"\\udfff"}}', '{"reason":"\\ud800"}', '{"type":"a.\\ud800"}', `{"pid":${process.pid},"name":"fz"}`),
);

export interface HttpRequest {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  body?: string;
}

/** Requests to every route that takes a name, with hostile segments, query strings and bodies. */
export const httpRequest: fc.Arbitrary<HttpRequest> = fc.oneof(
  fc.tuple(segment, fc.option(segment)).map(([name, q]): HttpRequest => ({ method: 'GET', path: `/queues/${name}${q === null ? '' : `?offset=${q}&limit=${q}`}` })),
  fc.tuple(segment, segment).map(([name, id]): HttpRequest => ({ method: 'GET', path: `/queues/${name}/tasks/${id}` })),
  fc.tuple(segment, body).map(([name, b]): HttpRequest => ({ method: 'POST', path: `/queues/${name}/tasks`, body: b })),
  fc.tuple(segment, segment, fc.constantFrom('retry', 'cancel'), body).map(([name, id, action, b]): HttpRequest => ({ method: 'POST', path: `/queues/${name}/tasks/${id}/${action}`, body: b })),
  fc.tuple(segment, segment).map(([name, id]): HttpRequest => ({ method: 'DELETE', path: `/queues/${name}/tasks/${id}` })),
  fc.tuple(segment, fc.constantFrom('pause', 'resume')).map(([name, action]): HttpRequest => ({ method: 'POST', path: `/queues/${name}/${action}` })),
  fc.tuple(fc.constantFrom('/heartbeat', '/heartbeat/heartbeat'), body).map(([path, b]): HttpRequest => ({ method: 'POST', path, body: b })),
  fc.tuple(fc.constantFrom('/heartbeats', '/services', '/bus', '/queues'), fc.option(segment)).map(([path, q]): HttpRequest => ({ method: 'GET', path: q === null ? path : `${path}?scope=${q}&name=${q}&offset=${q}` })),
  segment.map((topic): HttpRequest => ({ method: 'GET', path: `/bus/history?topic=${topic}&since=${topic}` })),
  body.map((b): HttpRequest => ({ method: 'POST', path: '/bus/publish', body: b })),
);

/** Sends the requests; a 5xx other than 503 (store away) or a dropped request is a finding. */
export async function fuzzHttp(target: FuzzTarget, requests: HttpRequest[]): Promise<Findings> {
  const findings: Findings = [];
  for (const request of requests) {
    try {
      const answer = await fetch(`${target.httpUrl}${request.path}`, {
        method: request.method,
        ...(request.body === undefined ? {} : { body: request.body, headers: { 'content-type': 'application/json' } }),
      });
      await answer.arrayBuffer();
      if (answer.status >= 500 && answer.status !== 503) findings.push(`${request.method} ${request.path.slice(0, 120)} answered ${answer.status}`);
    } catch (err) {
      // fetch refuses some URLs itself (a bare %): that is the client, not the gateway.
      if (!(err instanceof TypeError && /Invalid URL|URI/i.test(String((err as Error).message)))) {
        findings.push(`${request.method} ${request.path.slice(0, 120)} failed: ${(err as Error).message}`);
      }
    }
  }
  return findings;
}

/**
 * What a user checks after the storm: /health is 200, and a plain publish,
 * enqueue, pull and ack round-trip works on a fresh connection.
 */
export async function roundTrip(target: FuzzTarget, n: number): Promise<Findings> {
  const findings: Findings = [];
  const health = await fetch(`${target.httpUrl}/health`).catch(() => null);
  if (health?.status !== 200) findings.push(`/health answered ${health?.status ?? 'nothing'}`);
  await health?.arrayBuffer();
  const ws = new WebSocket(target.busUrl);
  const frames: Record<string, unknown>[] = [];
  ws.on('message', (data) => frames.push(JSON.parse(data.toString()) as Record<string, unknown>));
  ws.on('error', () => {});
  try {
    await once(ws, 'open');
    const wait = async (match: (f: Record<string, unknown>) => boolean, what: string) => {
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        const found = frames.find(match);
        if (found) return found;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      throw new Error(`round trip: no ${what}`);
    };
    const topic = `rt.check${n}`;
    const queue = `rt.q${n % 4}`;
    ws.send(JSON.stringify({ action: 'subscribe', topic, id: 's' }));
    await wait((f) => f.id === 's' && f.ok === true, 'subscribe receipt');
    ws.send(JSON.stringify({ action: 'publish', message: { type: topic, payload: n }, id: 'p' }));
    await wait((f) => (f.event as { type?: string } | undefined)?.type === topic, 'event');
    ws.send(JSON.stringify({ action: 'enqueue', queue, task: { n }, id: 'e' }));
    const receipt = await wait((f) => f.id === 'e', 'enqueue receipt');
    ws.send(JSON.stringify({ action: 'pull', queue }));
    const { task } = await wait((f) => (f.task as { payload?: { n?: number } } | undefined)?.payload?.n === n, 'task') as { task: { id: string } };
    if (task.id !== receipt.taskId) findings.push(`round trip: enqueued ${String(receipt.taskId)}, got ${task.id}`);
    ws.send(JSON.stringify({ action: 'ack', taskId: task.id, id: 'a' }));
    const ack = await wait((f) => f.id === 'a', 'ack receipt');
    if (ack.ok !== true) findings.push(`round trip: ack answered ${JSON.stringify(ack)}`);
  } catch (err) {
    findings.push((err as Error).message);
  } finally {
    ws.terminate();
  }
  return findings;
}
