import { MongoClient, type Collection } from 'mongodb';
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

/**
 * Heartbeat records in MongoDB, in the original service's database,
 * collection and document shape (official driver). The driver connects on
 * first use and reconnects by itself; an operation that finds no server
 * within the selection timeout fails, and the routes answer 503.
 */
export class MongoHeartbeatStore implements HeartbeatStore {
  readonly kind = 'mongo' as const;
  private readonly client: MongoClient;
  private readonly collection: Collection<Document>;

  constructor(options: MongoHeartbeatStoreOptions) {
    this.client = new MongoClient(options.url, {
      appName: 'brainstem',
      serverSelectionTimeoutMS: options.serverSelectionTimeoutMS ?? 2000,
    });
    this.collection = this.client.db(options.dbName).collection<Document>(options.collection);
  }

  /** Indexes the pid (every write is by pid); harmless when it exists. */
  async prepare(): Promise<void> {
    await storeCall(() => this.collection.createIndex({ pid: 1 }));
  }

  get(pid: number): Promise<HeartbeatRecord | null> {
    return storeCall(async () => {
      const doc = await this.collection.findOne({ pid }, NO_ID);
      return doc ? fromDocument(doc) : null;
    });
  }

  countLive(name: string, sessionId: string, since: number): Promise<number> {
    return storeCall(() => this.collection.countDocuments({
      name,
      sessionId,
      last: { $gte: since },
      killedAt: { $exists: false },
      $or: [{ proven: true }, { local: false }],
    }));
  }

  saveBeat(record: BeatRecord): Promise<void> {
    return storeCall(async () => {
      await this.collection.updateOne(
        { pid: record.pid },
        { $set: { ...record }, $unset: { killedAt: '', downAt: '' } },
        { upsert: true },
      );
    });
  }

  list(): Promise<HeartbeatRecord[]> {
    return storeCall(async () => (await this.collection.find({}, NO_ID).sort({ pid: 1 }).toArray()).map(fromDocument));
  }

  findStale(before: number): Promise<HeartbeatRecord[]> {
    return storeCall(async () => (await this.collection.find({
      last: { $lt: before },
      killedAt: { $exists: false },
      downAt: { $exists: false },
    }, NO_ID).toArray()).map(fromDocument));
  }

  markDown(pid: number, last: number, at: number): Promise<boolean> {
    return storeCall(async () => {
      const result = await this.collection.updateOne(
        { pid, last, downAt: { $exists: false }, killedAt: { $exists: false } },
        { $set: { downAt: at } },
      );
      return result.modifiedCount === 1;
    });
  }

  markKilled(pid: number, at: number): Promise<void> {
    return storeCall(async () => {
      await this.collection.updateOne({ pid }, { $set: { killedAt: at } });
    });
  }

  endSession(sessionId: string, at: number): Promise<number> {
    return storeCall(async () => {
      const result = await this.collection.updateMany(
        { sessionId, killedAt: { $exists: false } },
        { $set: { killedAt: at } },
      );
      return result.modifiedCount;
    });
  }

  ping(): Promise<void> {
    return storeCall(async () => {
      await this.client.db('admin').command({ ping: 1 });
    });
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
