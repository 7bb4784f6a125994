import type { Redis } from 'ioredis';

/** How a stream ends (v3 §2): with the task's ack, its last failure, or its cancel/timeout/revoke. */
export type StreamEnd = 'ok' | 'failed' | 'cancelled';

/** One stored entry of a task's stream, as followers get it. */
export type StreamEntry =
  | { kind: 'chunk'; seq: number; attempt: number; /** The chunk's data as JSON text. */ json: string; bytes: number }
  | { kind: 'binary'; seq: number; attempt: number; data: Buffer; bytes: number }
  | { kind: 'end'; seq: number; end: StreamEnd; /** JSON text of the result (`ok` only). */ result: string | null; bytes: number };

/** What the stream's first entry says of it. */
export interface StreamMeta {
  queue: string;
  /** When it was opened (the task's enqueue), ms since the epoch. */
  openedAt: number;
  /** The enqueue's `opts.traceparent`. */
  traceparent?: string;
}

/** What an append answers instead of a seq. */
export type AppendRefusal = 'no stream' | 'ended' | 'full';

/**
 * Opens a task's stream: its first entry (`0-1`, before seq 1) names the
 * queue, so a follower naming only the task finds whose right it needs, the
 * time it opened and the task's traceparent (or ''); the set of open
 * streams (KEYS[2]) gets its task id until its end. An
 * ended stream of the same id is an earlier task's: it goes. Answers the
 * queue of a live stream of another queue with that id, else nil.
 */
const OPEN = `
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first > 0 then
  if redis.call('PTTL', KEYS[1]) > 0 then
    redis.call('DEL', KEYS[1])
  else
    local fields = first[1][2]
    for i = 1, #fields, 2 do
      if fields[i] == 'q' and fields[i + 1] ~= ARGV[1] then return fields[i + 1] end
    end
    return false
  end
end
redis.call('XADD', KEYS[1], '0-1', 'k', 'o', 'q', ARGV[1], 's', ARGV[2], 't', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
return false`;

/**
 * The next seq of the slowest follower other gateways report for a stream
 * (-1: none), from its readers hash (KEYS[2]: gateway id → `next:expiresAt`),
 * leaving out the caller's own (ARGV[1]) and reports past their expiry
 * (ARGV[2]: now): a killed gateway's followers hold nothing back for long.
 */
const REMOTE_NEXT = `
local function remoteNext(readersKey, self, now)
  local readers = redis.call('HGETALL', readersKey)
  local slowest = -1
  for i = 1, #readers, 2 do
    if readers[i] ~= self then
      local nextSeq, expires = string.match(readers[i + 1], '^(%d+):(%d+)$')
      if nextSeq and tonumber(expires) > tonumber(now) then
        local n = tonumber(nextSeq)
        if slowest < 0 or n < slowest then slowest = n end
      end
    end
  end
  return slowest
end`;

/**
 * Appends a chunk or the end under the next seq (seq n is stream id n-0);
 * answers {seq, next seq of the slowest follower on other gateways}.
 * Only an ended stream has an expiry: it is kept STREAM_KEEP_MS after its end.
 * KEYS: the stream, its readers, the open streams. ARGV: kind (t, b, e),
 * data, attempt, max chunks, keep ms, end, result, gateway id, now, task id.
 */
const APPEND = `${REMOTE_NEXT}
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 then return {-1, -1} end
if redis.call('PTTL', KEYS[1]) > 0 then return {-2, -1} end
local seq = tonumber(string.match(last[1][1], '^(%d+)')) + 1
local maxChunks = tonumber(ARGV[4])
if ARGV[1] == 'e' then
  redis.call('XADD', KEYS[1], 'MAXLEN', maxChunks + 2, seq .. '-0', 'k', 'e', 'e', ARGV[6], 'r', ARGV[7])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('ZREM', KEYS[3], ARGV[10])
  return {seq, -1}
end
if seq > maxChunks then return {-3, -1} end
redis.call('XADD', KEYS[1], 'MAXLEN', maxChunks + 2, seq .. '-0', 'k', ARGV[1], 'a', ARGV[3], 'd', ARGV[2])
return {seq, remoteNext(KEYS[2], ARGV[8], ARGV[9])}`;

/** ARGV: gateway id, now. */
const READ_REMOTE_NEXT = `${REMOTE_NEXT}
return remoteNext(KEYS[1], ARGV[1], ARGV[2])`;

const REFUSALS: Record<number, AppendRefusal> = { [-1]: 'no stream', [-2]: 'ended', [-3]: 'full' };

type StreamCommands = Redis & {
  taskStreamOpen(key: string, openKey: string, queue: string, openedAt: number, traceparent: string, taskId: string): Promise<string | null>;
  taskStreamAppend(key: string, readersKey: string, openKey: string, ...args: (string | number | Buffer)[]): Promise<[number, number]>;
  taskStreamRemoteNext(readersKey: string, gatewayId: string, now: number): Promise<number>;
};

/** A stored chunk's seq, and where the slowest follower on another gateway is (Infinity: none). */
export interface Appended {
  seq: number;
  remoteNext: number;
}

function nextOrNone(next: number): number {
  return next < 0 ? Infinity : next;
}

function seqOf(id: string): number {
  return Number(id.slice(0, id.indexOf('-')));
}

function entryOf(id: string, raw: Buffer[]): StreamEntry | null {
  const fields = new Map<string, Buffer>();
  for (let i = 0; i + 1 < raw.length; i += 2) fields.set(raw[i]!.toString(), raw[i + 1]!);
  const seq = seqOf(id);
  const kind = fields.get('k')?.toString();
  const data = fields.get('d') ?? Buffer.alloc(0);
  const attempt = Number(fields.get('a')?.toString() ?? 0);
  if (kind === 't') return { kind: 'chunk', seq, attempt, json: data.toString('utf8'), bytes: data.length };
  if (kind === 'b') return { kind: 'binary', seq, attempt, data, bytes: data.length };
  if (kind === 'e') {
    const result = fields.get('r')?.toString() ?? '';
    return { kind: 'end', seq, end: (fields.get('e')?.toString() ?? 'failed') as StreamEnd, result: result === '' ? null : result, bytes: result.length };
  }
  return null;
}

/**
 * Streams of task output in Redis, one Redis Stream per streamed task
 * (`PREFIX:>stream:TASKID`: `>` is in no queue name, so no BullMQ key of
 * any queue is named so), written on the gateway's shared connection.
 */
export class TaskStreamStore {
  private readonly redis: StreamCommands;

  constructor(
    redis: Redis,
    private readonly prefix: string,
    private readonly limits: { maxChunks: number; keepMs: number },
    /** This gateway's id in the streams' readers hashes. */
    private readonly gatewayId: string,
  ) {
    redis.defineCommand('taskStreamOpen', { numberOfKeys: 2, lua: OPEN });
    redis.defineCommand('taskStreamAppend', { numberOfKeys: 3, lua: APPEND });
    redis.defineCommand('taskStreamRemoteNext', { numberOfKeys: 1, lua: READ_REMOTE_NEXT });
    this.redis = redis as StreamCommands;
  }

  keyOf(taskId: string): string {
    return `${this.prefix}:>stream:${taskId}`;
  }

  /** Task ids of the streams opened and not yet ended, scored by when they opened. */
  private get openKey(): string {
    return `${this.prefix}:>streams-open`;
  }

  /** Streams opened (their task enqueued) and not yet ended, over every gateway on this Redis. */
  openCount(): Promise<number> {
    return this.redis.zcard(this.openKey);
  }

  /** Where each gateway's slowest follower of the stream is, so that a writer on another one waits for it. */
  private readersKeyOf(taskId: string): string {
    return `${this.prefix}:>stream-readers:${taskId}`;
  }

  /** Opens the stream of a new task; answers the queue of another task's live stream with this id, else null. */
  open(queue: string, taskId: string, traceparent: string | undefined): Promise<string | null> {
    return this.redis.taskStreamOpen(this.keyOf(taskId), this.openKey, queue, Date.now(), traceparent ?? '', taskId);
  }

  /** Stores a chunk; resolves with its seq once Redis has it. */
  async append(taskId: string, attempt: number, data: string | Uint8Array): Promise<Appended | AppendRefusal> {
    const kind = typeof data === 'string' ? 't' : 'b';
    const body = typeof data === 'string' ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const [seq, remoteNext] = await this.redis.taskStreamAppend(
      this.keyOf(taskId), this.readersKeyOf(taskId), this.openKey, kind, body, attempt, this.limits.maxChunks, this.limits.keepMs, '', '', this.gatewayId, Date.now(), taskId,
    );
    return seq > 0 ? { seq, remoteNext: nextOrNone(remoteNext) } : REFUSALS[seq]!;
  }

  /** Stores the end; null if the stream is gone or ended already. */
  async end(taskId: string, end: StreamEnd, result: string | null): Promise<number | null> {
    const [seq] = await this.redis.taskStreamAppend(
      this.keyOf(taskId), this.readersKeyOf(taskId), this.openKey, 'e', '', 0, this.limits.maxChunks, this.limits.keepMs, end, result ?? '', this.gatewayId, Date.now(), taskId,
    );
    return seq > 0 ? seq : null;
  }

  /** The next seq of the slowest follower of the stream on another gateway (Infinity: none). */
  async remoteNext(taskId: string): Promise<number> {
    return nextOrNone(await this.redis.taskStreamRemoteNext(this.readersKeyOf(taskId), this.gatewayId, Date.now()));
  }

  /** Reports where this gateway's slowest follower of the stream is, until `ttlMs` from now (null: no follower here). */
  async reportReaders(taskId: string, next: number | null, ttlMs: number): Promise<void> {
    const key = this.readersKeyOf(taskId);
    if (next === null) {
      await this.redis.hdel(key, this.gatewayId);
      return;
    }
    await this.redis.multi().hset(key, this.gatewayId, `${next}:${Date.now() + ttlMs}`).pexpire(key, ttlMs).exec();
  }

  /** What the task's stream says of itself; null when there is none (never streamed, or no longer kept). */
  async metaOf(taskId: string): Promise<StreamMeta | null> {
    const first = await this.redis.xrange(this.keyOf(taskId), '0-1', '0-1');
    const raw = first[0]?.[1] ?? [];
    const fields = new Map<string, string>();
    for (let i = 0; i + 1 < raw.length; i += 2) fields.set(raw[i]!, raw[i + 1]!);
    const queue = fields.get('q');
    if (queue === undefined) return null;
    const meta: StreamMeta = { queue, openedAt: Number(fields.get('s') ?? 0) };
    const traceparent = fields.get('t');
    if (traceparent) meta.traceparent = traceparent;
    return meta;
  }

  /** Up to `count` entries from seq `from` on. */
  async read(taskId: string, from: number, count: number): Promise<StreamEntry[]> {
    const raw = await this.redis.xrangeBuffer(this.keyOf(taskId), `${from}-0`, '+', 'COUNT', count);
    const entries: StreamEntry[] = [];
    for (const [id, fields] of raw) {
      const entry = entryOf(id.toString(), fields);
      if (entry) entries.push(entry);
    }
    return entries;
  }
}

export { seqOf };
