import type { Redis } from 'ioredis';
import { storeCall, type BeatRecord, type HeartbeatRecord, type HeartbeatStore } from './heartbeat-store.js';

export interface RedisHeartbeatStoreOptions {
  /** Key prefix; records are `PREFIX:pid:PID` hashes, listed in the set `PREFIX:pids`. */
  prefix?: string;
  /** Quit the connection on close (false when it is shared with other organs). */
  ownsConnection?: boolean;
}

const MARK_DOWN = `
if redis.call('HGET', KEYS[1], 'last') == ARGV[1]
  and redis.call('HEXISTS', KEYS[1], 'downAt') == 0
  and redis.call('HEXISTS', KEYS[1], 'killedAt') == 0 then
  redis.call('HSET', KEYS[1], 'downAt', ARGV[2])
  return 1
end
return 0`;

const MARK_KILLED = `
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'killedAt', ARGV[1]) end
return 0`;

const END_SESSION = `
local n = 0
for _, pid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[3] .. pid
  if redis.call('HGET', key, 'sessionId') == ARGV[1] and redis.call('HEXISTS', key, 'killedAt') == 0 then
    redis.call('HSET', key, 'killedAt', ARGV[2])
    n = n + 1
  end
end
return n`;

function optionalNumber(value: string | undefined): number | undefined {
  return value === undefined ? undefined : Number(value);
}

/** A hash as read back; null when the key does not exist (HGETALL answers {}). */
function fromHash(hash: Record<string, string>): HeartbeatRecord | null {
  if (hash.pid === undefined || hash.name === undefined) return null;
  const record: HeartbeatRecord = {
    pid: Number(hash.pid),
    last: Number(hash.last),
    name: hash.name,
    sessionId: hash.sessionId ?? '',
    cpu: Number(hash.cpu ?? 0),
    memory: Number(hash.memory ?? 0),
    netRx: Number(hash.netRx ?? 0),
    netTx: Number(hash.netTx ?? 0),
    startTime: hash.startTime ?? null,
    local: hash.local === '1',
    proven: hash.proven === '1',
    firstBeat: Number(hash.firstBeat ?? hash.last),
  };
  const killedAt = optionalNumber(hash.killedAt);
  if (killedAt !== undefined) record.killedAt = killedAt;
  const downAt = optionalNumber(hash.downAt);
  if (downAt !== undefined) record.downAt = downAt;
  return record;
}

/**
 * Heartbeat records in the gateway's Redis, one hash per pid with the
 * original document's fields, so they survive a restart with no MongoDB.
 * The conditional updates run as Lua scripts: a beat that arrives while a
 * check marks the record down always wins.
 */
export class RedisHeartbeatStore implements HeartbeatStore {
  readonly kind = 'redis' as const;
  private readonly prefix: string;
  private readonly pidsKey: string;

  constructor(private readonly redis: Redis, private readonly options: RedisHeartbeatStoreOptions = {}) {
    this.prefix = options.prefix ?? 'brainstem:heartbeat';
    this.pidsKey = `${this.prefix}:pids`;
  }

  /** The key of one record (tests read and alter records through it). */
  keyOf(pid: number): string {
    return `${this.prefix}:pid:${pid}`;
  }

  get(pid: number): Promise<HeartbeatRecord | null> {
    return storeCall(async () => fromHash(await this.redis.hgetall(this.keyOf(pid))));
  }

  async countLive(name: string, sessionId: string, since: number): Promise<number> {
    const records = await this.list();
    return records.filter((r) => r.name === name && r.sessionId === sessionId && r.last >= since && r.killedAt === undefined
      && (r.proven || !r.local)).length;
  }

  saveBeat(record: BeatRecord): Promise<void> {
    return storeCall(async () => {
      const key = this.keyOf(record.pid);
      const fields: Record<string, string> = {
        pid: String(record.pid),
        last: String(record.last),
        name: record.name,
        sessionId: record.sessionId,
        cpu: String(record.cpu),
        memory: String(record.memory),
        netRx: String(record.netRx),
        netTx: String(record.netTx),
        local: record.local ? '1' : '0',
        proven: record.proven ? '1' : '0',
        firstBeat: String(record.firstBeat),
      };
      const cleared = ['killedAt', 'downAt'];
      if (record.startTime === null) cleared.push('startTime');
      else fields.startTime = record.startTime;
      const results = await this.redis.multi()
        .hset(key, fields)
        .hdel(key, ...cleared)
        .sadd(this.pidsKey, String(record.pid))
        .exec();
      const failed = results?.find(([err]) => err);
      if (!results || failed) throw failed?.[0] ?? new Error('transaction aborted');
    });
  }

  list(): Promise<HeartbeatRecord[]> {
    return storeCall(async () => {
      const pids = await this.redis.smembers(this.pidsKey);
      if (pids.length === 0) return [];
      const pipeline = this.redis.pipeline();
      for (const pid of pids) pipeline.hgetall(this.keyOf(Number(pid)));
      const results = (await pipeline.exec()) ?? [];
      const records: HeartbeatRecord[] = [];
      for (const [err, hash] of results) {
        if (err) throw err;
        const record = fromHash(hash as Record<string, string>);
        if (record) records.push(record);
      }
      return records.sort((a, b) => a.pid - b.pid);
    });
  }

  async findStale(before: number): Promise<HeartbeatRecord[]> {
    const records = await this.list();
    return records.filter((r) => r.last < before && r.downAt === undefined && r.killedAt === undefined);
  }

  markDown(pid: number, last: number, at: number): Promise<boolean> {
    return storeCall(async () => (await this.redis.eval(MARK_DOWN, 1, this.keyOf(pid), String(last), String(at))) === 1);
  }

  markKilled(pid: number, at: number): Promise<void> {
    return storeCall(async () => {
      await this.redis.eval(MARK_KILLED, 1, this.keyOf(pid), String(at));
    });
  }

  endSession(sessionId: string, at: number): Promise<number> {
    return storeCall(async () => Number(await this.redis.eval(END_SESSION, 1, this.pidsKey, sessionId, String(at), `${this.prefix}:pid:`)));
  }

  ping(): Promise<void> {
    return storeCall(async () => {
      await this.redis.ping();
    });
  }

  async close(): Promise<void> {
    if (!this.options.ownsConnection) return;
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }
}
