import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export type ReceivedSpan = Record<string, unknown>;

/** A minimal OTLP/HTTP (JSON) collector on loopback: what the gateway exports to `url`/v1/traces. */
export async function startOtlpReceiver(t: Teardown): Promise<{ url: string; spans(): ReceivedSpan[] }> {
  const bodies: unknown[] = [];
  const receiver = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      if (request.url === '/v1/traces') bodies.push(JSON.parse(Buffer.concat(chunks).toString()));
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  receiver.listen(0, '127.0.0.1');
  await once(receiver, 'listening');
  t.teardown(() => receiver.close());
  const { port } = receiver.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans: () => bodies.flatMap((body) => (body as { resourceSpans: { scopeSpans: { spans: ReceivedSpan[] }[] }[] })
      .resourceSpans.flatMap((resource) => resource.scopeSpans.flatMap((scope) => scope.spans))),
  };
}
