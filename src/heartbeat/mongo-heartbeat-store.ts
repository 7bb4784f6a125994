import { MongoClient, MongoServerError, type Collection } from 'mongodb';
import { storeCall, type BeatRecord, type HeartbeatRecord, type HeartbeatStore } from './heartbeat-store.js';

export interface MongoHeartbeatStoreOptions {
  url: string;
  dbName: string;
  collection: string;
  /** How long an operation waits for a server before the store counts as down. */
  serverSelectionTimeoutMS?: number;
}

type Document = Partial<HeartbeatRecord> & { pid: number; last: number; name: string };

/** Documents written by the original service lack the fields brainstem added. */
function fromDocument(doc: Document): HeartbeatRecord {
  const record: HeartbeatRecord = {
    pid: doc.pid,
    last: doc.last,
    name: doc.name,
    sessionId: doc.sessionId ?? '',
    cpu: doc.cpu ?? 0,
    memory: doc.memory ?? 0,
    netRx: doc.netRx ?? 0,
    netTx: doc.netTx ?? 0,
    startTime: doc.startTime ?? null,
    local: doc.local ?? false,
    proven: doc.proven ?? false,
    firstBeat: doc.firstBeat ?? doc.last,
  };
  if (typeof doc.killedAt === 'number') record.killedAt = doc.killedAt;
  if (typeof doc.downAt === 'number') record.downAt = doc.downAt;
  return record;
}

const NO_ID = { projection: { _id: 0 } } as const;

/** The server's duplicate key error. */
const DUPLICATE_KEY = 11000;

function isDuplicateKey(err: unknown): boolean {
  return err instanceof MongoServerError && err.code === DUPLICATE_KEY;
}

/**
 * Heartbeat records in MongoDB, in the original service's database,
 * collection and document shape (official driver). Once connected, the
 * driver reconnects by itself; an operation that finds no server within the
 * selection timeout fails, and the routes answer 503.
 */
export class MongoHeartbeatStore implements HeartbeatStore {
  readonly kind = 'mongo' as const;
  private readonly client: MongoClient;
  private readonly collection: Collection<Document>;
  private connected: Promise<void> | null = null;

  constructor(options: MongoHeartbeatStoreOptions) {
    this.client = new MongoClient(options.url, {
      appName: 'brainstem',
      serverSelectionTimeoutMS: options.serverSelectionTimeoutMS ?? 2000,
    });
    this.collection = this.client.db(options.dbName).collection<Document>(options.collection);
  }

  /**
   * Connects, and again after a failed connect: a client whose first
   * connect failed (the server was down at start) fails every operation
   * with "Topology is closed" until it is told to connect.
   */
  private connect(): Promise<void> {
    this.connected ??= this.client.connect().then(() => undefined, (err: unknown) => {
      this.connected = null;
      throw err;
    });
    return this.connected;
  }

  /** Runs an operation once connected; any failure is StoreUnavailableError. */
  private call<T>(operation: () => Promise<T>): Promise<T> {
    return storeCall(async () => {
      await this.connect();
      return operation();
    });
  }

  /**
   * The unique pid index, made on first use (and again after the server was
   * unreachable): without it two gateways' first beats of one pid insert
   * two documents. Null while not asked for (or to be asked again).
   */
  private pidIndex: Promise<string | null> | null = null;

  /**
   * Makes the unique pid index (harmless when it exists). Resolves with why
   * the server refused it (older records with duplicate pids, an index of
   * that name made otherwise) or null; beats are kept either way, but a race
   * may then duplicate a pid. Rejects with StoreUnavailableError when the
   * server cannot be reached.
   */
  prepare(): Promise<string | null> {
    this.pidIndex ??= this.connect().then(() => this.collection.createIndex({ pid: 1 }, { unique: true })).then(
      () => null,
      (err: unknown) => {
        if (err instanceof MongoServerError) return err.message;
        this.pidIndex = null;
        throw err;
      },
    );
    return storeCall(() => this.pidIndex as Promise<string | null>);
  }

  get(pid: number): Promise<HeartbeatRecord | null> {
    return this.call(async () => {
      const doc = await this.collection.findOne({ pid }, NO_ID);
      return doc ? fromDocument(doc) : null;
    });
  }

  countLive(name: string, sessionId: string, since: number): Promise<number> {
    return this.call(() => this.collection.countDocuments({
      name,
      sessionId,
      last: { $gte: since },
      killedAt: { $exists: false },
      $or: [{ proven: true }, { local: false }],
    }));
  }

  saveBeat(record: BeatRecord): Promise<void> {
    return this.call(async () => {
      await this.prepare();
      const upsert = () => this.collection.updateOne(
        { pid: record.pid },
        { $set: { ...record }, $unset: { killedAt: '', downAt: '' } },
        { upsert: true },
      );
      // Another writer inserted this pid between our match and our insert: its document is there now to update.
      // (mongod retries such an upsert itself; FerretDB answers the duplicate key.)
      await upsert().catch((err: unknown) => {
        if (isDuplicateKey(err)) return upsert();
        throw err;
      });
    });
  }

  list(): Promise<HeartbeatRecord[]> {
    return this.call(async () => (await this.collection.find({}, NO_ID).sort({ pid: 1 }).toArray()).map(fromDocument));
  }

  findStale(before: number): Promise<HeartbeatRecord[]> {
    return this.call(async () => (await this.collection.find({
      last: { $lt: before },
      killedAt: { $exists: false },
      downAt: { $exists: false },
    }, NO_ID).toArray()).map(fromDocument));
  }

  markDown(pid: number, last: number, at: number): Promise<boolean> {
    return this.call(async () => {
      const result = await this.collection.updateOne(
        { pid, last, downAt: { $exists: false }, killedAt: { $exists: false } },
        { $set: { downAt: at } },
      );
      return result.modifiedCount === 1;
    });
  }

  markKilled(pid: number, at: number): Promise<void> {
    return this.call(async () => {
      await this.collection.updateOne({ pid }, { $set: { killedAt: at } });
    });
  }

  endSession(sessionId: string, at: number): Promise<number> {
    return this.call(async () => {
      const result = await this.collection.updateMany(
        { sessionId, killedAt: { $exists: false } },
        { $set: { killedAt: at } },
      );
      return result.modifiedCount;
    });
  }

  ping(): Promise<void> {
    return this.call(async () => {
      await this.client.db('admin').command({ ping: 1 });
    });
  }

  async close(): Promise<void> {
    await this.pidIndex?.catch(() => undefined);
    await this.client.close();
  }
}
