import type { Span, Tracer } from '@opentelemetry/api';
import { isTraceparent } from './trace-context.js';

/** A unit of the gateway's work, exported as one span under its message's or task's traceparent. */
export interface GatewaySpan {
  name: string;
  traceparent: string;
  startMs: number;
  endMs: number;
  attributes: Record<string, string | number | boolean>;
  /** Set when the work failed (a failed task attempt). */
  error?: string;
}

export interface SpanExport {
  record(span: GatewaySpan): void;
  /** Sends what is buffered and stops. */
  close(): Promise<void>;
}

/**
 * OTLP/HTTP span export with the official OpenTelemetry SDK, loaded only
 * when an endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT, the base
 * URL; spans go to its /v1/traces): without one, nothing is loaded and
 * nothing is paid. Only work that carries a traceparent is exported, as a
 * child of it.
 */
export async function startSpanExport(endpoint: string, serviceName: string): Promise<SpanExport> {
  const [api, sdk, resources, otlp] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/exporter-trace-otlp-http'),
  ]);
  const provider = new sdk.BasicTracerProvider({
    resource: resources.resourceFromAttributes({ 'service.name': serviceName }),
    spanProcessors: [new sdk.BatchSpanProcessor(new otlp.OTLPTraceExporter({ url: new URL('v1/traces', endpoint.endsWith('/') ? endpoint : `${endpoint}/`).href }))],
  });
  const tracer: Tracer = provider.getTracer('brainstem');

  return {
    record(work) {
      if (!isTraceparent(work.traceparent)) return;
      const [, traceId, spanId, flags] = work.traceparent.split('-') as [string, string, string, string];
      const parent = api.trace.setSpanContext(api.ROOT_CONTEXT, {
        traceId, spanId, traceFlags: Number.parseInt(flags, 16), isRemote: true,
      });
      const span: Span = tracer.startSpan(work.name, { startTime: work.startMs, attributes: work.attributes }, parent);
      if (work.error !== undefined) span.setStatus({ code: api.SpanStatusCode.ERROR, message: work.error });
      span.end(work.endMs);
    },
    async close() {
      await provider.shutdown();
    },
  };
}
