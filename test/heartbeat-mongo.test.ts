import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MongoClient } from 'mongodb';
import t from 'tap';
import type { BrainstemApp } from '../app.js';
import { startGateway } from './helpers/gateway.js';
import { createFerretDB, startFerretDB, startMongo } from './helpers/mongo-server.js';
import { until } from './helpers/test-socket.js';

type Frame = Record<string, unknown>;
type Teardown = { teardown(fn: () => unknown): void };

/** Pids far above anything running here: beats for them are accepted, never signalled. */
const FAKE_PID = 3_999_000;

function ecosystemFile(t: Teardown, apps: object[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'brainstem-eco-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'ecosystem.config.cjs');
  writeFileSync(path, `module.exports = ${JSON.stringify({ apps })};\n`);
  return path;
}

/** A beat from another machine (its pid cannot be proven here, so it counts toward its name's limit). */
async function remoteBeat(app: BrainstemApp, pid: number, name: string): Promise<{ status: number; body: Frame }> {
  const res = await app.inject({ method: 'POST', url: '/heartbeat', payload: { pid, name }, remoteAddress: '192.168.1.20' });
  return { status: res.statusCode, body: res.json() as Frame };
}

async function heartbeatsHealth(app: BrainstemApp): Promise<{ ok: boolean; detail?: string }> {
  const res = await app.inject({ method: 'GET', url: '/health' });
  return (res.json() as { dependencies: Record<string, { ok: boolean; detail?: string }> }).dependencies.heartbeats as { ok: boolean; detail?: string };
}

/** A raw driver client on `url`, closed at teardown. */
function rawClient(t: Teardown, url: string): MongoClient {
  const client = new MongoClient(url);
  t.teardown(() => client.close());
  return client;
}

t.test('two gateways on one database: the records are shared, instance limits count per gateway, one pid is one document', async (t) => {
  const mongo = await startMongo(t);
  const mongoDbName = `brainstem_test_${randomUUID().slice(0, 8)}`;
  const raw = rawClient(t, mongo.url);
  t.teardown(() => raw.db(mongoDbName).dropDatabase());
  const records = raw.db(mongoDbName).collection('heartbeats');
  const ecosystemConfig = ecosystemFile(t, [{ name: 'tts', instances: 1 }]);
  const options = { mongoUrl: mongo.url, mongoDbName, ecosystemConfig, heartbeatTimeoutMs: 60_000, heartbeatCheckIntervalMs: 60_000 };
  const a = await startGateway(t, options);
  const b = await startGateway(t, options);
  t.equal(a.app.heartbeat.store.kind, 'mongo');

  t.equal((await remoteBeat(a.app, FAKE_PID + 1, 'tts')).status, 200);
  t.same(await remoteBeat(a.app, FAKE_PID + 2, 'tts'), { status: 409, body: { error: 'instance limit exceeded for tts', code: 'INSTANCE_LIMIT' } });
  // The original counted the instances of its own session; each gateway is a session of its own.
  t.equal((await remoteBeat(b.app, FAKE_PID + 2, 'tts')).status, 200, "B counts its own session's instances");
  t.equal((await remoteBeat(b.app, FAKE_PID + 3, 'tts')).status, 409, 'and holds its own limit');
  const listed = (await b.app.inject({ method: 'GET', url: '/heartbeats' })).json() as Frame[];
  t.same(listed.map((r) => [r.pid, r.sessionId]), [
    [FAKE_PID + 1, a.app.heartbeat.monitor.sessionId],
    [FAKE_PID + 2, b.app.heartbeat.monitor.sessionId],
  ], "each gateway lists both, with the session that received each");

  const first = await Promise.all([1, 2, 3, 4].flatMap(() => [remoteBeat(a.app, FAKE_PID + 10, 'misc'), remoteBeat(b.app, FAKE_PID + 10, 'misc')]));
  t.same(first.map((r) => r.status), [200, 200, 200, 200, 200, 200, 200, 200]);
  t.equal(await records.countDocuments({ pid: FAKE_PID + 10 }), 1, 'first beats of one pid at both gateways at once: one document');

  await a.app.close();
  t.match(await records.findOne({ pid: FAKE_PID + 1 }), { killedAt: Number }, "closing A marks A's records stopped");
  t.notOk('killedAt' in (await records.findOne({ pid: FAKE_PID + 2 }) ?? {}), "and leaves B's alone");
});

t.test('a server crash and restart under beats: every accepted beat is kept, and beats are accepted again once it is back', async (t) => {
  const server = await startFerretDB(t);
  const gw = await startGateway(t, { mongoUrl: server.url, heartbeatTimeoutMs: 60_000, heartbeatCheckIntervalMs: 60_000 });
  const beats: { pid: number; sentAt: number; doneAt: number; status: number; body: Frame }[] = [];
  let beating = true;
  const pump = (async () => {
    for (let pid = FAKE_PID; beating; pid++) {
      const sentAt = Date.now();
      const answer = await remoteBeat(gw.app, pid, 'svc');
      beats.push({ pid, sentAt, doneAt: Date.now(), ...answer });
    }
  })();
  const accepted = () => beats.filter((beat) => beat.status === 200);
  const refused = () => beats.filter((beat) => beat.status !== 200);

  await until(() => accepted().length >= 20, 20_000, 'beats before the crash');
  const crashAt = Date.now();
  await server.stop(true);
  await until(() => refused().length >= 2, 20_000, 'beats refused while the server is down');
  const down = await heartbeatsHealth(gw.app);
  t.equal(down.ok, false, '/health: the store is down');
  t.match(down.detail, /heartbeat store unavailable: .* \(since \d{4}-\d\d-\d\dT/);

  await server.start();
  const backAt = Date.now();
  const acceptedBefore = accepted().length;
  await until(() => accepted().length >= acceptedBefore + 20, 20_000, 'beats after the restart');
  beating = false;
  await pump;

  // The beat in flight at the crash may go either way.
  t.same(beats.filter((beat) => beat.doneAt < crashAt && beat.status !== 200).map((beat) => beat.pid), [], 'every beat answered before the crash was accepted');
  t.same(beats.filter((beat) => beat.sentAt >= backAt && beat.status !== 200).map((beat) => beat.pid), [], 'every beat sent once the server was back was accepted');
  t.same([...new Set(refused().map((beat) => JSON.stringify([beat.status, beat.body])))],
    [JSON.stringify([503, { error: 'db not available', code: 'UNAVAILABLE' }])], 'a beat in the outage answers 503, as the original did');
  const stored = new Set((await rawClient(t, server.url).db('heartbeat_db').collection('heartbeats').find({}).toArray()).map((doc) => doc.pid as number));
  t.same(accepted().filter((beat) => !stored.has(beat.pid)).map((beat) => beat.pid), [], `all ${accepted().length} accepted beats are stored`);

  const back = await heartbeatsHealth(gw.app);
  t.equal(back.ok, true);
  t.match(back.detail, /^mongo, session \S+; back at \S+ after an outage from \S+: heartbeat store unavailable: /, '/health says what happened');
});

t.test('a server down at start: beats answer 503, and are accepted once it is up', async (t) => {
  const server = await createFerretDB(t);
  const gw = await startGateway(t, { mongoUrl: server.url, heartbeatTimeoutMs: 60_000, heartbeatCheckIntervalMs: 60_000 });
  t.same(await remoteBeat(gw.app, FAKE_PID, 'tts'), { status: 503, body: { error: 'db not available', code: 'UNAVAILABLE' } });
  t.equal((await heartbeatsHealth(gw.app)).ok, false);
  t.equal((await gw.app.inject({ method: 'GET', url: '/heartbeats' })).statusCode, 503);

  await server.start();
  await until(async () => (await remoteBeat(gw.app, FAKE_PID, 'tts')).status === 200, 20_000, 'a beat accepted');
  t.match((await gw.app.inject({ method: 'GET', url: '/heartbeats' })).json(), [{ pid: FAKE_PID, name: 'tts', status: 'alive' }]);
  const indexes = await rawClient(t, server.url).db('heartbeat_db').collection('heartbeats').indexes();
  t.match(indexes, [{ key: { _id: 1 } }, { key: { pid: 1 }, unique: true }], 'the unique pid index, made once the server came');
  t.match((await heartbeatsHealth(gw.app)).detail, /back at .* after an outage from /);
});
