import type { BusEvent } from '../bus/protocol.js';
import { invoke, type PubSub } from './pubsub.js';

/** Called with each progress a worker reports for an enqueued task, and the event that carried it. */
export type ProgressCallback = (progress: unknown, event: BusEvent) => unknown;

interface ReplyTopic {
  ready: Promise<void>;
  /** taskId → callback. */
  callbacks: Map<string, ProgressCallback>;
}

/**
 * `enqueue(…, {replyTo, onProgress})`: the gateway publishes a task's
 * progress as `REPLYTO.progress` (correlationId = taskId) and its result to
 * `REPLYTO`. One subscription to each per replyTo; a task's callback ends
 * with its result.
 */
export class ProgressListeners {
  private readonly topics = new Map<string, ReplyTopic>();

  constructor(private readonly pubsub: PubSub, private readonly report: (err: unknown) => void) {}

  prepare(replyTo: string): Promise<void> {
    const known = this.topics.get(replyTo);
    if (known) return known.ready;
    const callbacks = new Map<string, ProgressCallback>();
    const ready = Promise.all([
      this.pubsub.subscribe(`${replyTo}.progress`, (event) => {
        const callback = callbacks.get(String(event.correlationId));
        if (callback) invoke((e: BusEvent) => callback(e.payload, e), event, this.report);
      }),
      this.pubsub.subscribe(replyTo, (event) => {
        callbacks.delete(String(event.correlationId));
      }),
    ]).then(() => undefined, (err: unknown) => {
      this.topics.delete(replyTo);
      throw err;
    });
    const topic = { ready, callbacks };
    this.topics.set(replyTo, topic);
    return ready;
  }

  add(replyTo: string, taskId: string, callback: ProgressCallback): void {
    this.topics.get(replyTo)?.callbacks.set(taskId, callback);
  }
}
