/**
 * `npm run bench`: the bus against its baselines, side by side in one run.
 * Each scenario runs `--rounds` times (default 3); in every round each
 * server is started fresh in its own process and driven by clients in this
 * one. Each scenario prints a table of medians to stdout and one JSON line.
 * See bench/README.md.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { runDispatchBench } from './dispatch.js';
import { runQueueNamesBench } from './scenarios/queue-names.js';
import { runQueueBench } from './scenarios/queues.js';
import { runStreamsBench } from './scenarios/streams.js';
import { formatNumber, load, log, medianOf, median, table } from './lib/report.js';
import { natsServerPath, SERVER_LABELS, startBenchRedis, startServer, type BenchRedis, type ServerKind } from './lib/servers.js';
import { runConnections, type ConnectionsOptions } from './scenarios/connections.js';
import { runFanout, type FanoutOptions } from './scenarios/fanout.js';
import { runLatency, type LatencyOptions } from './scenarios/latency.js';

const { values: args } = parseArgs({
  options: {
    only: { type: 'string', default: 'S1,S2,S3,Q1,Q2,Q3,T1,T2,T3' },
    rounds: { type: 'string', default: '3' },
    servers: { type: 'string', default: 'brainstem,nats,seed,wire' },
    quick: { type: 'boolean', default: false },
    profile: { type: 'string' },
    connections: { type: 'string' },
    'settle-seconds': { type: 'string' },
    'node-args': { type: 'string' },
    'gateway-log': { type: 'string' },
    'previous-gateway': { type: 'string' },
    's1-rate': { type: 'string' },
    'previous-node-args': { type: 'string' },
  },
});

const scenarios = new Set(args.only.split(',').map((s) => s.trim().toUpperCase()));
const rounds = Math.max(1, Number(args.rounds));
const requested = args.servers.split(',').map((s) => s.trim()) as ServerKind[];
for (const kind of requested) if (!(kind in SERVER_LABELS)) throw new Error(`unknown server ${kind}`);
const natsMissing = requested.includes('nats') && natsServerPath() === null;
const servers = natsMissing ? requested.filter((kind) => kind !== 'nats') : requested;

const fanoutOptions: FanoutOptions = {
  subscribers: 10, payloadBytes: 256, durationMs: args.quick ? 2000 : 5000, window: 1000, ratePerSecond: Number(args['s1-rate'] ?? 0),
};
const latencyOptions: LatencyOptions = {
  ratePerSecond: 5000, durationMs: args.quick ? 3000 : 10_000, warmupMs: 1000, payloadBytes: 256,
};
const connectionsOptions: ConnectionsOptions = {
  connections: Number(args.connections ?? (args.quick ? 1000 : 5000)), broadcasts: 5, payloadBytes: 256,
  settleSeconds: Number(args['settle-seconds'] ?? 0),
};

type Row = Record<string, number | boolean>;

interface ScenarioSpec<R extends Row> {
  name: string;
  title: string;
  run(kind: ServerKind, redis: BenchRedis, round: number): Promise<R>;
  columns: { key: keyof R & string; label: string; digits?: number }[];
  /** Ratios and pass/fail against the issue's targets, from per-round results. */
  verdict(byServer: Map<ServerKind, R[]>): { ratios: Record<string, number>; targets: Record<string, boolean> };
}

async function withServer<R>(kind: ServerKind, redis: BenchRedis, body: (server: Awaited<ReturnType<typeof startServer>>) => Promise<R>): Promise<R> {
  const profiling = kind === 'brainstem' && args.profile !== undefined;
  if (profiling) mkdirSync(args.profile as string, { recursive: true });
  const server = await startServer(kind, {
    redisUrl: redis.url,
    ...(profiling ? { cpuProfileDir: args.profile } : {}),
    ...(args['node-args'] ? { nodeArgs: args['node-args'].split(' ').filter(Boolean) } : {}),
    // The previous build with its own Node options: also an A/B of an option on one build.
    ...(kind === 'previous' && args['previous-node-args'] !== undefined
      ? { nodeArgs: args['previous-node-args'].split(' ').filter(Boolean) } : {}),
    ...(kind === 'brainstem' && args['gateway-log'] ? { logFile: args['gateway-log'] } : {}),
    ...(args['previous-gateway'] ? { previousGateway: args['previous-gateway'] } : {}),
  });
  try {
    return await body(server);
  } finally {
    await server.stop();
  }
}

/** Rotates the order servers run in, so no server always runs first or last. */
function order(round: number): ServerKind[] {
  return servers.map((_, i) => servers[(i + round) % servers.length] as ServerKind);
}

function perRoundRatio<R extends Row>(byServer: Map<ServerKind, R[]>, key: keyof R, a: ServerKind, b: ServerKind): number {
  const as = byServer.get(a);
  const bs = byServer.get(b);
  if (!as || !bs) return Number.NaN;
  return median(as.map((r, i) => (r[key] as number) / ((bs[i]?.[key] as number) ?? Number.NaN)));
}

const S1: ScenarioSpec<Awaited<ReturnType<typeof runFanout>>> = {
  name: 'S1',
  title: `S1 fan-out: 1 publisher, ${fanoutOptions.subscribers} subscribers, ${fanoutOptions.payloadBytes}-byte payloads, `
    + `window ${fanoutOptions.window}, ${fanoutOptions.ratePerSecond ? `${fanoutOptions.ratePerSecond} msg/s` : 'as fast as it goes'}, `
    + `${fanoutOptions.durationMs / 1000} s`,
  run: (kind, redis) => withServer(kind, redis, (server) => runFanout(server, fanoutOptions)),
  columns: [
    { key: 'publishedPerSecond', label: 'published/s' },
    { key: 'deliveredPerSecond', label: 'delivered/s' },
    { key: 'allDelivered', label: 'all delivered' },
    { key: 'p50Ms', label: 'p50 ms', digits: 2 },
    { key: 'p99Ms', label: 'p99 ms', digits: 2 },
    { key: 'serverCpuPercent', label: 'server CPU %' },
    { key: 'serverMicrosPerDelivery', label: 'server µs/delivery', digits: 2 },
    { key: 'clientCpuPercent', label: 'client CPU %' },
    { key: 'serverRssMB', label: 'server RSS MB', digits: 1 },
  ],
  verdict(byServer) {
    const vsSeed = perRoundRatio(byServer, 'deliveredPerSecond', 'brainstem', 'seed');
    const vsWire = perRoundRatio(byServer, 'deliveredPerSecond', 'brainstem', 'wire');
    const all = byServer.get('brainstem')?.every((r) => r.allDelivered) ?? false;
    const cpuVsNats = perRoundRatio(byServer, 'serverMicrosPerDelivery', 'brainstem', 'nats');
    return {
      ratios: {
        // Server CPU per delivery, brainstem's over nats-server's: issue 19's target is <= 1.
        cpuPerDeliveryVsNats: cpuVsNats,
        deliveredVsNats: perRoundRatio(byServer, 'deliveredPerSecond', 'brainstem', 'nats'),
        ...(byServer.has('previous') ? { cpuPerDeliveryVsPreviousBuild: perRoundRatio(byServer, 'serverMicrosPerDelivery', 'brainstem', 'previous') } : {}),
        deliveredVsSeed: vsSeed,
        deliveredVsWireLimit: vsWire,
        // CPU per delivery, seed's over brainstem's: how much more work the seed does per message.
        cpuEfficiencyVsSeed: perRoundRatio(byServer, 'serverMicrosPerDelivery', 'seed', 'brainstem'),
        cpuEfficiencyVsWireLimit: perRoundRatio(byServer, 'serverMicrosPerDelivery', 'wire', 'brainstem'),
      },
      targets: {
        ...(byServer.has('nats') ? { 'server CPU per delivery <= 1.0x nats-server': cpuVsNats <= 1 } : {}),
        'delivered >= 5x seed': vsSeed >= 5,
        'delivered >= 0.6x wire limit': vsWire >= 0.6,
        'all delivered': all,
      },
    };
  },
};

const S2: ScenarioSpec<Awaited<ReturnType<typeof runLatency>>> = {
  name: 'S2',
  title: `S2 latency: ${latencyOptions.ratePerSecond} msg/s for ${latencyOptions.durationMs / 1000} s to one subscriber `
    + `(after ${latencyOptions.warmupMs / 1000} s of warm-up)`,
  run: (kind, redis) => withServer(kind, redis, (server) => runLatency(server, latencyOptions)),
  columns: [
    { key: 'sent', label: 'sent' },
    { key: 'lost', label: 'lost' },
    { key: 'p50Ms', label: 'p50 ms', digits: 3 },
    { key: 'p99Ms', label: 'p99 ms', digits: 3 },
    { key: 'p999Ms', label: 'p99.9 ms', digits: 3 },
    { key: 'maxMs', label: 'max ms', digits: 2 },
    { key: 'serverRssMB', label: 'server RSS MB', digits: 1 },
  ],
  verdict(byServer) {
    const brainstem = byServer.get('brainstem') ?? [];
    const p99 = median(brainstem.map((r) => r.p99Ms));
    const vsNats = perRoundRatio(byServer, 'p99Ms', 'brainstem', 'nats');
    return {
      ratios: { p99VsNats: vsNats, p99VsSeed: perRoundRatio(byServer, 'p99Ms', 'brainstem', 'seed') },
      targets: {
        ...(byServer.has('nats') ? { 'p99 <= nats-server p99': vsNats <= 1 } : {}),
        'p99 <= 1 ms': p99 <= 1,
        'nothing lost': brainstem.every((r) => r.lost === 0),
      },
    };
  },
};

const S3: ScenarioSpec<Awaited<ReturnType<typeof runConnections>>> = {
  name: 'S3',
  title: `S3 many connections: ${connectionsOptions.connections} idle subscribers (own topic + one shared), `
    + `${connectionsOptions.broadcasts} broadcasts`,
  run: (kind, redis) => withServer(kind, redis, (server) => runConnections(server, connectionsOptions)),
  columns: [
    { key: 'rssBeforeMB', label: 'RSS before MB', digits: 1 },
    { key: 'rssIdleMB', label: 'RSS idle MB', digits: 1 },
    { key: 'rss10sMB', label: 'RSS 10 s MB', digits: 1 },
    { key: 'rssAfterMB', label: 'RSS after MB', digits: 1 },
    { key: 'rssSettledMB', label: 'RSS settled MB', digits: 1 },
    { key: 'bytesPerConnection', label: 'bytes/conn' },
    { key: 'connectSeconds', label: 'connect s', digits: 2 },
    { key: 'broadcastMedianMs', label: 'broadcast median ms', digits: 1 },
    { key: 'broadcastMaxMs', label: 'broadcast max ms', digits: 1 },
    { key: 'allReached', label: 'all reached' },
  ],
  verdict(byServer) {
    const brainstem = byServer.get('brainstem') ?? [];
    const rss = median(brainstem.map((r) => Math.max(r.rssIdleMB, r.rssAfterMB)));
    const settled = median(brainstem.map((r) => r.rssSettledMB));
    const broadcast = median(brainstem.map((r) => r.broadcastMedianMs));
    const full = connectionsOptions.connections >= 5000;
    const rss10sVsNats = perRoundRatio(byServer, 'rss10sMB', 'brainstem', 'nats');
    return {
      ratios: {
        rss10sVsNats,
        rssVsSeed: perRoundRatio(byServer, 'rssAfterMB', 'brainstem', 'seed'),
        rssSettledVsSeed: perRoundRatio(byServer, 'rssSettledMB', 'brainstem', 'seed'),
        broadcastVsSeed: perRoundRatio(byServer, 'broadcastMedianMs', 'brainstem', 'seed'),
      },
      targets: {
        ...(byServer.has('nats') ? { [`RSS 10 s after connecting <= nats-server's${full ? '' : ' (not the target run)'}`]: rss10sVsNats <= 1 } : {}),
        [`RSS <= 100 MB${full ? '' : ' (fewer than 5,000 connections: not the target run)'}`]: rss <= 100,
        ...(Number.isNaN(settled) ? {} : { 'RSS settled <= 100 MB': settled <= 100 }),
        'broadcast median <= 120 ms': broadcast <= 120,
        'all reached': brainstem.every((r) => r.allReached),
      },
    };
  },
};

async function runScenario<R extends Row>(spec: ScenarioSpec<R>, redis: BenchRedis): Promise<void> {
  const byServer = new Map<ServerKind, R[]>(servers.map((kind) => [kind, []]));
  const loads: string[] = [load()];
  for (let round = 0; round < rounds; round++) {
    for (const kind of order(round)) {
      const result = await spec.run(kind, redis, round);
      byServer.get(kind)?.push(result);
      log(`${spec.name} round ${round + 1}/${rounds} ${SERVER_LABELS[kind]}: ${JSON.stringify(result)}`);
    }
    loads.push(load());
  }
  const medians = new Map([...byServer].map(([kind, results]) => [kind, medianOf(results)]));
  const rows = [...medians].map(([kind, m]) => [
    SERVER_LABELS[kind],
    ...spec.columns.map((c) => formatNumber(m[c.key] as number | boolean, c.digits ?? 0)),
  ]);
  const { ratios, targets } = spec.verdict(byServer);
  process.stdout.write(`\n${spec.title} — medians of ${rounds}\n`);
  process.stdout.write(`${table(['server', ...spec.columns.map((c) => c.label)], rows)}\n`);
  for (const [name, value] of Object.entries(ratios)) process.stdout.write(`  ${name}: ${formatNumber(value, 2)}\n`);
  for (const [name, ok] of Object.entries(targets)) process.stdout.write(`  target ${name}: ${ok ? 'met' : 'NOT met'}\n`);
  process.stdout.write(`${JSON.stringify({
    scenario: spec.name,
    rounds,
    medians: Object.fromEntries(medians),
    perRound: Object.fromEntries(byServer),
    ratios,
    targets,
    loadavg: loads,
  })}\n`);
}

/**
 * S3 needs a descriptor per connection in this process and in the server's.
 * Node raises its soft RLIMIT_NOFILE to the hard limit when it starts, and
 * the processes it spawns inherit that: what a shell spawned from here sees
 * is what the bench and its servers have. Refuse early if it is too low.
 */
function ensureDescriptors(): void {
  if (!scenarios.has('S3')) return;
  const needed = connectionsOptions.connections + 512;
  const limit = Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim());
  if (limit < needed) {
    throw new Error(`S3 needs ${needed} file descriptors, the limit is ${limit} (raise the hard limit: ulimit -Hn) or lower --connections`);
  }
  log(`descriptor limit ${limit}, S3 needs ${needed}`);
}

async function main(): Promise<void> {
  ensureDescriptors();
  if (natsMissing) process.stdout.write('SKIP nats-server: not installed (apt install nats-server, or set NATS_SERVER)\n');
  log(`bench: ${cpus().length} CPUs, load ${load()}, ${rounds} round(s), servers ${servers.join(', ')}`);
  const redis = await startBenchRedis();
  try {
    if (scenarios.has('S1')) await runScenario(S1, redis);
    if (scenarios.has('S2')) await runScenario(S2, redis);
    if (scenarios.has('S3')) await runScenario(S3, redis);
    if (scenarios.has('Q1')) {
      await runQueueBench({
        redis, rounds, quick: args.quick,
        ...(args.profile ? { profileDir: args.profile as string } : {}),
        ...(servers.includes('previous') && args['previous-gateway'] ? { previousGateway: args['previous-gateway'] } : {}),
      });
    }
    if (scenarios.has('Q2')) await runDispatchBench({ redisUrl: redis.url, rounds, quick: args.quick });
    if (scenarios.has('Q3')) await runQueueNamesBench({ redis, rounds, quick: args.quick });
    const streams = new Set(['T1', 'T2', 'T3'].filter((name) => scenarios.has(name)));
    if (streams.size > 0) await runStreamsBench({ redis, rounds, quick: args.quick, only: streams });
  } finally {
    await redis.stop();
  }
  log(`bench done, load ${load()}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
