import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import t, { type Test } from 'tap';
import { StoreUnavailableError, type BeatRecord, type HeartbeatStore } from '../src/heartbeat/heartbeat-store.js';
import { MongoHeartbeatStore } from '../src/heartbeat/mongo-heartbeat-store.js';
import { RedisHeartbeatStore } from '../src/heartbeat/redis-heartbeat-store.js';
import { createFerretDB, startFerretDB, startMongo } from './helpers/mongo-server.js';
import { startRedis } from './helpers/redis.js';
import { until } from './helpers/test-socket.js';

function record(pid: number, fields: Partial<BeatRecord> = {}): BeatRecord {
  return {
    pid, last: 1_000_000, name: 'tts', sessionId: 's1', cpu: 1.5, memory: 2048, netRx: 10, netTx: 20,
    startTime: '12345', local: true, proven: true, firstBeat: 900_000, ...fields,
  };
}

/**
 * What every HeartbeatStore must do, whatever keeps the records: the
 * monitor relies on each of these rules to count instances, find stale
 * services once, and never let a check overwrite a fresher beat.
 */
function storeContract(t: Test, makeStore: (t: Test) => Promise<HeartbeatStore>): void {
  t.test('a saved beat reads back with the original document fields', async (t) => {
    const store = await makeStore(t);
    t.equal(await store.get(101), null);
    t.same(await store.list(), []);
    await store.saveBeat(record(101));
    await store.saveBeat(record(102, { startTime: null, local: false, proven: false, name: 'stt', cpu: 0 }));
    t.same(await store.get(101), record(101));
    t.same(await store.get(102), record(102, { startTime: null, local: false, proven: false, name: 'stt', cpu: 0 }));
    t.same((await store.list()).map((r) => r.pid), [101, 102], 'listed by pid');
    await store.saveBeat(record(101, { last: 1_000_500, cpu: 3.25, name: 'tts' }));
    t.match(await store.get(101), { last: 1_000_500, cpu: 3.25 }, 'upserted by pid');
    t.equal((await store.list()).length, 2);
    await store.ping();
  });

  t.test('countLive counts this name in this session, recent and not killed', async (t) => {
    const store = await makeStore(t);
    await store.saveBeat(record(201, { last: 5000 }));
    await store.saveBeat(record(202, { last: 5000 }));
    await store.saveBeat(record(203, { last: 1000 }));
    await store.saveBeat(record(204, { last: 5000, sessionId: 's0' }));
    await store.saveBeat(record(205, { last: 5000, name: 'stt' }));
    t.equal(await store.countLive('tts', 's1', 4000), 2);
    await store.markKilled(202, 6000);
    t.equal(await store.countLive('tts', 's1', 4000), 1, 'a killed instance does not count');
    t.equal(await store.countLive('tts', 's1', 0), 2);
    t.equal(await store.countLive('nobody', 's1', 0), 0);
    // A local beat whose sender did not prove the pid could squat the limit with anyone's pid: it does not count.
    await store.saveBeat(record(206, { last: 5000, proven: false }));
    t.equal(await store.countLive('tts', 's1', 4000), 1, 'an unproven local instance does not count');
    await store.saveBeat(record(207, { last: 5000, proven: false, local: false }));
    t.equal(await store.countLive('tts', 's1', 4000), 2, 'one from another machine (never provable) does');
  });

  t.test('findStale and markDown: each quiet record is taken once, and a new beat wins', async (t) => {
    const store = await makeStore(t);
    await store.saveBeat(record(301, { last: 1000 }));
    await store.saveBeat(record(302, { last: 1000 }));
    await store.saveBeat(record(303, { last: 9000 }));
    t.same((await store.findStale(5000)).map((r) => r.pid).sort(), [301, 302]);

    t.equal(await store.markDown(301, 1000, 6000), true);
    t.equal(await store.markDown(301, 1000, 6001), false, 'taken once');
    t.match(await store.get(301), { downAt: 6000 });

    // 302 beat again after the query found it stale: the stale `last` no longer matches.
    await store.saveBeat(record(302, { last: 7000 }));
    t.equal(await store.markDown(302, 1000, 7001), false, 'the fresher beat wins');
    t.notOk('downAt' in (await store.get(302) ?? {}));
    t.same((await store.findStale(5000)).map((r) => r.pid), [], 'down records are not stale again');
    t.equal(await store.markDown(999, 1000, 7001), false, 'no record, nothing marked');
    t.equal(await store.get(999), null);
  });

  t.test('a beat clears killedAt and downAt; markKilled never creates a record', async (t) => {
    const store = await makeStore(t);
    await store.saveBeat(record(401, { last: 1000 }));
    t.equal(await store.markDown(401, 1000, 2000), true);
    await store.markKilled(401, 2000);
    t.match(await store.get(401), { killedAt: 2000, downAt: 2000 });
    await store.saveBeat(record(401, { last: 3000 }));
    const back = await store.get(401);
    t.notOk(back && 'killedAt' in back);
    t.notOk(back && 'downAt' in back);
    await store.markKilled(402, 2000);
    t.equal(await store.get(402), null);
  });

  t.test("endSession marks only that session's live records killed", async (t) => {
    const store = await makeStore(t);
    await store.saveBeat(record(501));
    await store.saveBeat(record(502));
    await store.saveBeat(record(503, { sessionId: 's0' }));
    await store.markKilled(502, 100);
    t.equal(await store.endSession('s1', 7000), 1);
    t.match(await store.get(501), { killedAt: 7000 });
    t.match(await store.get(502), { killedAt: 100 }, 'an earlier kill time is kept');
    t.notOk('killedAt' in (await store.get(503) ?? {}));
    t.equal(await store.endSession('s1', 8000), 0);
  });
}

t.test('RedisHeartbeatStore', async (t) => {
  const redis = await startRedis(t);
  storeContract(t, async (t) => {
    const store = new RedisHeartbeatStore(new Redis(redis.url), { prefix: `test:${randomUUID()}`, ownsConnection: true });
    t.teardown(() => store.close());
    return store;
  });

  t.test('a store that cannot reach Redis rejects with StoreUnavailableError', async (t) => {
    const unreachable = new Redis({ port: 1, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    unreachable.on('error', () => {});
    const store = new RedisHeartbeatStore(unreachable, { ownsConnection: true });
    t.teardown(() => store.close());
    await t.rejects(store.get(1), StoreUnavailableError);
    await t.rejects(store.saveBeat(record(1)), StoreUnavailableError);
    await t.rejects(store.list(), StoreUnavailableError);
    await t.rejects(store.endSession('s1', 1), StoreUnavailableError);
  });
});

t.test('MongoHeartbeatStore', async (t) => {
  const mongo = await startMongo(t);
  const dbName = `brainstem_test_${randomUUID().slice(0, 8)}`;
  const admin = new MongoClient(mongo.url);
  t.teardown(async () => {
    await admin.db(dbName).dropDatabase();
    await admin.close();
  });
  storeContract(t, async (t) => {
    const store = new MongoHeartbeatStore({ url: mongo.url, dbName, collection: `heartbeats_${randomUUID().slice(0, 8)}` });
    await store.prepare();
    t.teardown(() => store.close());
    return store;
  });

  /** A collection of its own, its store (closed at teardown) and the raw driver's view of it. */
  async function collectionOf(t: Test, options: { url?: string; serverSelectionTimeoutMS?: number } = {}) {
    const collection = `heartbeats_${randomUUID().slice(0, 8)}`;
    const store = new MongoHeartbeatStore({ url: options.url ?? mongo.url, dbName, collection, ...options });
    t.teardown(() => store.close());
    return { store, raw: admin.db(dbName).collection(collection), name: collection };
  }

  t.test("documents the user's original heartbeat service wrote are read, and it reads what brainstem writes", async (t) => {
    const { store, raw } = await collectionOf(t);
    // The original's upsert: `$set: { last, name, sessionId, ...metrics }`, `$unset: { killedAt }`, by pid; the monitor's `$set: { killedAt }`.
    const original = { last: 1_000, name: 'tts', sessionId: 'original-session', cpu: 2.5, memory: 4096, netRx: 11, netTx: 22 };
    await raw.updateOne({ pid: 601 }, { $set: original, $unset: { killedAt: '' } }, { upsert: true });
    await raw.updateOne({ pid: 602 }, { $set: { ...original, name: 'stt' } }, { upsert: true });
    await raw.updateOne({ pid: 602 }, { $set: { killedAt: 1_500 } });
    await store.prepare();

    t.same(await store.get(601), {
      pid: 601, ...original, startTime: null, local: false, proven: false, firstBeat: 1_000,
    }, 'the fields brainstem added read as unknown: not local, not proven, first beat = last');
    t.match(await store.get(602), { name: 'stt', killedAt: 1_500 });
    t.same((await store.list()).map((r) => r.pid), [601, 602]);
    t.same((await store.findStale(2_000)).map((r) => r.pid), [601], 'a record the original killed is not stale');
    t.equal(await store.markDown(601, 1_000, 2_000), true);

    const { _id: id } = await raw.findOne({ pid: 601 }) ?? {};
    await store.saveBeat(record(601, { last: 3_000, sessionId: 's1' }));
    const docs = await raw.find({ pid: 601 }).toArray();
    t.equal(docs.length, 1, 'the beat updated the original document, by pid');
    t.same(docs[0]?._id, id, 'the same document (its _id kept)');
    t.notOk('downAt' in (docs[0] ?? {}));

    // The original service's own queries, on what brainstem wrote.
    t.match(await raw.findOne({ pid: 601, sessionId: 's1' }), { pid: 601, last: 3_000, name: 'tts', cpu: 1.5, memory: 2048, netRx: 10, netTx: 20 });
    t.equal(await raw.countDocuments({ name: 'tts', sessionId: 's1', last: { $gte: 2_500 }, killedAt: { $exists: false } }), 1);
    t.same((await raw.find({ last: { $lt: 2_000 } }).toArray()).map((d) => d.pid), [602]);
    await store.markKilled(601, 4_000);
    t.match(await raw.findOne({ pid: 601 }), { killedAt: 4_000 }, 'killedAt, as the original sets and clears it');
  });

  t.test('prepare makes a unique pid index; first beats of one pid from two stores at once store it once', async (t) => {
    const { store, raw, name } = await collectionOf(t);
    t.equal(await store.prepare(), null);
    t.equal(await store.prepare(), null, 'again: harmless');
    const other = new MongoHeartbeatStore({ url: mongo.url, dbName, collection: name });
    t.teardown(() => other.close());
    t.equal(await other.prepare(), null, 'a second gateway on the same collection');
    t.match(await raw.indexes(), [{ key: { _id: 1 } }, { key: { pid: 1 }, unique: true }]);

    const beats = [];
    for (let i = 0; i < 10; i++) beats.push(store.saveBeat(record(701, { last: 1_000 + i })), other.saveBeat(record(701, { last: 2_000 + i })));
    await Promise.all(beats);
    t.equal(await raw.countDocuments({ pid: 701 }), 1, 'one document for the pid');
  });

  t.test('older records with a duplicate pid: the index is refused and said why, beats are still kept', async (t) => {
    const { store, raw } = await collectionOf(t);
    await raw.insertMany([{ pid: 801, last: 1_000, name: 'tts' }, { pid: 801, last: 1_100, name: 'tts' }]);
    t.type(await store.prepare(), 'string', 'the server\'s refusal');
    await store.saveBeat(record(802));
    t.match(await store.get(802), { pid: 802, name: 'tts' });
    t.match(await raw.indexes(), [{ key: { _id: 1 } }], 'no index on pid');
  });
});

t.test('a server down at start: the store answers once it is up, and makes the index then', async (t) => {
  const server = await createFerretDB(t);
  const store = new MongoHeartbeatStore({ url: server.url, dbName: 'heartbeat_db', collection: 'heartbeats', serverSelectionTimeoutMS: 300 });
  t.teardown(() => store.close());
  await t.rejects(store.prepare(), StoreUnavailableError);
  await t.rejects(store.saveBeat(record(901)), StoreUnavailableError);
  await t.rejects(store.ping(), StoreUnavailableError);

  await server.start();
  await until(() => store.ping().then(() => true, () => false), 10_000, 'the store answers');
  await store.saveBeat(record(901));
  t.match(await store.get(901), { pid: 901 });
  const raw = new MongoClient(server.url);
  t.teardown(() => raw.close());
  t.match(await raw.db('heartbeat_db').collection('heartbeats').indexes(), [{ key: { _id: 1 } }, { key: { pid: 1 }, unique: true }],
    'the index made on the first beat after the server came');
});

t.test('a server restart: the store reconnects by itself and finds every record again', async (t) => {
  const server = await startFerretDB(t);
  const store = new MongoHeartbeatStore({ url: server.url, dbName: 'heartbeat_db', collection: 'heartbeats', serverSelectionTimeoutMS: 300 });
  t.teardown(() => store.close());
  await store.prepare();
  await store.saveBeat(record(1001));
  await server.stop(true);
  await t.rejects(store.get(1001), StoreUnavailableError, 'down: unavailable, not a hang');
  await server.start();
  await until(() => store.ping().then(() => true, () => false), 10_000, 'the store answers');
  t.match(await store.get(1001), { pid: 1001 }, 'the record written before the crash');
  await store.saveBeat(record(1002));
  t.same((await store.list()).map((r) => r.pid), [1001, 1002]);
});

t.test('a MongoHeartbeatStore with no server rejects with StoreUnavailableError (no MongoDB needed)', async (t) => {
  const store = new MongoHeartbeatStore({ url: 'mongodb://127.0.0.1:1', dbName: 'heartbeat_db', collection: 'heartbeats', serverSelectionTimeoutMS: 200 });
  t.teardown(() => store.close());
  await t.rejects(store.get(1), StoreUnavailableError);
  await t.rejects(store.saveBeat(record(1)), StoreUnavailableError);
  await t.rejects(store.ping(), StoreUnavailableError);
});
