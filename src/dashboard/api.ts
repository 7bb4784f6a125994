/** The gateway's REST routes as the dashboard calls them, with its token. */
import type { BusDescription } from '../bus/bus-description.js';
import type { RetentionRule } from '../bus/history/retention-rules.js';
import type { BusEvent } from '../client/browser.js';
import type { RecordWithStatus } from '../heartbeat/heartbeat-monitor.js';
import type { ServiceView } from '../heartbeat/service-directory.js';
import type { QueueDetail, QueueSummary, TaskState } from '../queues/queue-service.js';

export type { BusDescription, QueueDetail, QueueSummary, RecordWithStatus, ServiceView };

export interface DashboardSession {
  auth: boolean;
  name: string | null;
  admin: boolean;
  instanceLimits: Record<string, number>;
}

export interface RetryReceipt {
  ok: true;
  taskId: string;
  from: TaskState;
}

/** A refusal from the gateway: its `{error, code}` and the HTTP status. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = 'ApiError';
  }
}

export class Api {
  /** `base`: the page's own address, so the dashboard also works under a proxy prefix. */
  constructor(private readonly base: string, private readonly token: () => string | null) {}

  session(): Promise<DashboardSession> {
    return this.request('GET', 'dashboard/session');
  }

  heartbeats(): Promise<RecordWithStatus[]> {
    return this.request('GET', 'heartbeats');
  }

  async services(): Promise<ServiceView[]> {
    return (await this.request<{ services: ServiceView[] }>('GET', 'services')).services;
  }

  async queues(): Promise<QueueSummary[]> {
    return (await this.request<{ queues: QueueSummary[] }>('GET', 'queues')).queues;
  }

  queue(name: string, limit: number): Promise<QueueDetail> {
    return this.request('GET', `queues/${encodeURIComponent(name)}?limit=${limit}`);
  }

  bus(): Promise<BusDescription & { retained?: RetentionRule[] }> {
    return this.request('GET', 'bus');
  }

  history(topic: string, last: number): Promise<{ events: BusEvent[]; offset: string; gap: boolean }> {
    return this.request('GET', `bus/history?topic=${encodeURIComponent(topic)}&last=${last}`);
  }

  retryTask(queue: string, taskId: string): Promise<RetryReceipt> {
    return this.request('POST', `queues/${encodeURIComponent(queue)}/tasks/${encodeURIComponent(taskId)}/retry`);
  }

  cancelTask(queue: string, taskId: string): Promise<unknown> {
    return this.request('POST', `queues/${encodeURIComponent(queue)}/tasks/${encodeURIComponent(taskId)}/cancel`);
  }

  removeTask(queue: string, taskId: string): Promise<{ ok: true; taskId: string }> {
    return this.request('DELETE', `queues/${encodeURIComponent(queue)}/tasks/${encodeURIComponent(taskId)}`);
  }

  /**
   * A streamed task's Server-Sent Events. The token goes in `?token=`: an
   * EventSource cannot set headers, and keeps this address when it resumes.
   */
  taskStreamUrl(queue: string, taskId: string): string {
    const url = new URL(`queues/${encodeURIComponent(queue)}/tasks/${encodeURIComponent(taskId)}/stream`, this.base);
    url.search = '';
    url.hash = '';
    const token = this.token();
    if (token !== null) url.searchParams.set('token', token);
    return url.toString();
  }

  private async request<T>(method: string, path: string): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    const token = this.token();
    if (token !== null) headers.authorization = `Bearer ${token}`;
    let response: Response;
    try {
      response = await fetch(new URL(path, this.base), { method, headers, cache: 'no-store' });
    } catch (err) {
      throw new ApiError(0, 'OFFLINE', `the gateway did not answer (${(err as Error).message})`);
    }
    const body = await response.json().catch(() => null) as unknown;
    if (!response.ok) {
      const refusal = (body ?? {}) as { error?: unknown; code?: unknown };
      throw new ApiError(
        response.status,
        typeof refusal.code === 'string' ? refusal.code : `HTTP_${response.status}`,
        typeof refusal.error === 'string' ? refusal.error : `${method} /${path} answered ${response.status}`,
      );
    }
    return body as T;
  }
}
