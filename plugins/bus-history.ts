import fp from 'fastify-plugin';
import { EventHistory } from '../src/bus/history/event-history.js';
import { DEFAULT_RULES, RetentionRules, type RetentionRule } from '../src/bus/history/retention-rules.js';
import { StreamStore } from '../src/bus/history/stream-store.js';

declare module 'fastify' {
  interface FastifyInstance {
    history: EventHistory;
  }
}

export interface BusHistoryOptions {
  /** The config file's `"history"`, or null when it says nothing. */
  fileRules: RetentionRule[] | null;
}

const CONNECT_WAIT_MS = 3000;
const AGE_TRIM_INTERVAL_MS = 10_000;

/**
 * Retained topics: events of the topics the rules name are stored in Redis
 * Streams before they are delivered, and a subscription may start from an
 * offset (src/bus/history). BUS_HISTORY replaces the file's rules; with
 * neither, DEFAULT_RULES.
 */
export default fp<BusHistoryOptions>(async function busHistoryPlugin(app, options) {
  const { config } = app;
  const rules = new RetentionRules(config.busHistory ?? options.fileRules ?? DEFAULT_RULES);
  // Fail-fast: a publish on a retained topic while Redis is away is refused at once, not queued.
  const connection = app.redis.createConnection('queue');
  if (app.redis.isReady() && connection.status !== 'ready') {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, CONNECT_WAIT_MS);
      connection.once('ready', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
  const store = new StreamStore(connection, config.busClusterChannel, rules.list, app.log);
  const history = new EventHistory(rules, store, app.bus.router, app.log, config.busMaxBacklogBytes);
  app.bus.publisher.history = history;
  store.startAgeTrim(AGE_TRIM_INTERVAL_MS);
  app.decorate('history', history);
  if (rules.size > 0) app.log.info({ rules: rules.list.map((rule) => rule.topics) }, 'bus history: retained topics');
  app.addHook('onClose', async () => {
    store.stop();
    app.bus.publisher.history = null;
  });
}, { name: 'brainstem-bus-history', dependencies: ['brainstem-redis', 'brainstem-bus'] });
