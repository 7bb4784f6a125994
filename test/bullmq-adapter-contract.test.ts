import { createRequire } from 'node:module';
import { Queue, QueueKeys, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import t from 'tap';
import {
  activeLocks, addMany, addManyScript, attemptFailure, completeMany, dropBackoff, extendLocks, GATEWAY_WORKER_NAME, isLostLease, jobHost, jobLockedWith,
  metaKey, metaPattern, finishManyScript, queueBeside, moveManyToActive, moveManyToActiveScript, moveStalledToWait, popMarkers, moveToActive, nextJobOf, queueNameOfMetaKey, repairUnreadable, RESERVED_TASK_IDS,
  settlementsAfter, uncountDelivery, waitForStreamEntries, type Fetched, type FetchOptions, type JobHost, type NewJob, type TaskJob,
} from '../src/queues/bullmq-adapter.js';
import { deliveryFlaw, maxAttemptsOf } from '../src/queues/stored-task.js';
import { newestFirst } from './helpers/closers.js';
import { startRedis } from './helpers/redis.js';

// Each internal of bullmq that src/queues/bullmq-adapter.ts relies on,
// exercised against the installed version. Upgrading bullmq: run this first.
const PINNED = '6.7.0';
const installed = (createRequire(import.meta.url)('bullmq/package.json') as { version: string }).version;

const closing = newestFirst(t);
const redis = await startRedis(closing);
const PREFIX = 'contract';
const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
closing.teardown(() => connection.disconnect());

function queueAndWorker(name: string): { queue: Queue; worker: Worker } {
  const queue = new Queue(name, { connection, prefix: PREFIX });
  const own = connection.duplicate();
  const worker = new Worker(name, null, { connection: own, prefix: PREFIX, name: GATEWAY_WORKER_NAME, autorun: false });
  closing.teardown(() => queue.close());
  closing.teardown(async () => {
    await worker.close(true);
    own.disconnect();
  });
  return { queue, worker };
}

const template = new Queue('template', { connection, prefix: 'contract-template' });
closing.teardown(() => template.close());
const FETCH: FetchOptions = { prefix: PREFIX, lockDuration: 30_000, stalledInterval: 1000, maxStalledCount: 5, name: GATEWAY_WORKER_NAME };

/** A queue's job host on the template's connection, as the gateway fetches through it. */
function hostOf(name: string): JobHost {
  const queue = new Queue(name, { connection, prefix: PREFIX });
  closing.teardown(() => queue.close());
  return jobHost(template, queue, FETCH);
}

t.test('the installed bullmq is the version this contract was checked against', async (t) => {
  t.equal(installed, PINNED, 'a new bullmq: check every test below, then move the pin');
});

t.test('attempts as stored: no option is 0 (one attempt); a given count is kept', async (t) => {
  const { queue } = queueAndWorker('c.attempts');
  const plain = await queue.add('x', {});
  const three = await queue.add('x', {}, { attempts: 3 });
  const reread = await queue.getJob(plain.id as string);
  t.ok(reread?.opts.attempts === 0 || reread?.opts.attempts === undefined, `stored ${String(reread?.opts.attempts)}`);
  t.equal(maxAttemptsOf(reread?.opts ?? {}), 1);
  t.equal(maxAttemptsOf((await queue.getJob(three.id as string))?.opts ?? {}), 3);
});

t.test('a manual fetch: processedBy, the lock key, the delivery count and taking it back', async (t) => {
  const { queue, worker } = queueAndWorker('c.fetch');
  const added = await queue.add('x', { n: 1 });
  const job = await worker.getNextJob('tok-1') as TaskJob;
  t.equal(job.id, added.id);
  t.equal(job.processedBy, GATEWAY_WORKER_NAME, 'the worker\'s name is recorded as processedBy');
  t.same(await activeLocks(connection, queue), [{ id: added.id, token: 'tok-1' }], 'active list and :lock key');
  t.equal(job.attemptsStarted, 1);
  await uncountDelivery(connection, queue, job, 'tok-1');
  t.equal((await queue.getJob(added.id as string))?.attemptsStarted, 0, 'the ats field taken back');
  await uncountDelivery(connection, queue, job, 'another-token');
  t.equal((await queue.getJob(added.id as string))?.attemptsStarted, 0, 'only under its own lock token');
});

t.test('moveToCompleted with fetchNext: the raw reply carries the next job', async (t) => {
  const { queue, worker } = queueAndWorker('c.next');
  await queue.add('x', { n: 1 });
  const second = await queue.add('x', { n: 2 });
  const first = await worker.getNextJob('tok-2') as TaskJob;
  const due = Date.now() + 60_000;
  await queue.add('later', { n: 3 }, { delay: 60_000 });
  const reply = await first.moveToCompleted('done', 'tok-2', true);
  const { job: next } = nextJobOf(hostOf('c.next'), reply, 'tok-2');
  t.equal(next?.id, second.id);
  t.same(next?.data, { n: 2 });
  t.equal(next?.token, 'tok-2');
  const none = nextJobOf(hostOf('c.next'), await next!.moveToCompleted('done', 'tok-2', true), 'tok-2');
  t.equal(none.job, undefined, 'none left: no job');
  t.ok(none.delayUntil >= due - 1000 && none.delayUntil <= due + 1000, 'and when the delayed one is due');
});

t.test('a lost lock is one of the error codes isLostLease knows', async (t) => {
  const { queue, worker } = queueAndWorker('c.lost');
  await queue.add('x', {});
  const job = await worker.getNextJob('tok-3') as TaskJob;
  const err = await job.moveToCompleted('x', 'wrong-token', false).then(() => null, (e: unknown) => e);
  t.ok(err, 'refused');
  t.ok(isLostLease(err), `code ${String((err as { code?: unknown }).code)}`);
  t.notOk(isLostLease(new Error('other')));
});

t.test('failed attempts: the reason list, and dropping the backoff retries at once', async (t) => {
  const { queue, worker } = queueAndWorker('c.fail');
  const added = await queue.add('x', {}, { attempts: 3, backoff: { type: 'fixed', delay: 60_000 } });
  const job = await worker.getNextJob('tok-4') as TaskJob;
  dropBackoff(job);
  await job.moveToFailed(attemptFailure('first reason'), 'tok-4', false);
  const stored = await queue.getJob(added.id as string);
  t.equal(await stored?.getState(), 'waiting', 'back in wait, not delayed');
  t.same(stored?.stacktrace, ['first reason'], 'the stack is the reason alone');
  t.same(stored?.opts.backoff, { type: 'fixed', delay: 60_000 }, 'the stored task keeps its backoff');
  const again = await worker.getNextJob('tok-5') as TaskJob;
  await again.moveToFailed(attemptFailure('final', true), 'tok-5', false);
  t.equal(await (await queue.getJob(added.id as string))?.getState(), 'failed', 'UnrecoverableError ends it');
});

t.test('key names: reserved task ids, the meta key and its pattern, the event stream', async (t) => {
  const { queue, worker } = queueAndWorker('c.keys');
  t.same([...RESERVED_TASK_IDS].sort(), Object.keys(queue.keys).filter((k) => k !== '').sort(), 'as the Queue\'s own keys');
  t.same([...RESERVED_TASK_IDS].sort(), Object.keys(new QueueKeys(PREFIX).getKeys('c.keys')).filter((k) => k !== '').sort());
  const start = `${Date.now() - 1}-0`;
  const ok = await queue.add('x', {});
  const bad = await queue.add('x', {});
  t.equal(await connection.exists(metaKey(PREFIX, 'c.keys')), 1);
  const [, keys] = await connection.scan('0', 'MATCH', metaPattern(PREFIX), 'COUNT', 1000);
  t.ok(keys.map((k) => queueNameOfMetaKey(PREFIX, k)).includes('c.keys'));
  // Settled by raw Workers (one unnamed, one named), by the gateway's, and one settled then removed.
  const own = await queue.add('x', {});
  const gone = await queue.add('x', {});
  const rawConnection = connection.duplicate();
  const raw = new Worker('c.keys', null, { connection: rawConnection, prefix: PREFIX, autorun: false });
  const named = new Worker('c.keys', null, { connection: rawConnection, prefix: PREFIX, name: 'image-worker', autorun: false });
  closing.teardown(async () => {
    await Promise.all([raw.close(true), named.close(true)]);
    rawConnection.disconnect();
  });
  const first = await raw.getNextJob('tok-6') as TaskJob;
  await first.moveToCompleted('r', 'tok-6', false);
  const second = await named.getNextJob('tok-7') as TaskJob;
  await second.moveToFailed(attemptFailure('boom', true), 'tok-7', false);
  const third = await worker.getNextJob('tok-8') as TaskJob;
  await third.moveToCompleted('mine', 'tok-8', false);
  const fourth = await raw.getNextJob('tok-9') as TaskJob;
  await fourth.moveToCompleted('r', 'tok-9', false);
  await queue.remove(gone.id as string);
  const ready = await waitForStreamEntries(connection, [[queue.keys.events as string, start], ['contract:none', '0']], 100);
  t.same([...ready.keys()], [queue.keys.events], 'entries after the start, on that stream only');
  const scan = await settlementsAfter(connection, queue, start, 1000);
  t.same(scan.settlements, [
    { event: 'completed', jobId: ok.id },
    { event: 'failed', jobId: bad.id, failedReason: 'boom' },
  ], 'the raw Workers\' completion and failure, in order, with the reason; not the gateway worker\'s (' + own.id + '), not a removed task\'s, no added/waiting/active entries');
  t.ok(scan.scanned >= 6, `every entry scanned (${scan.scanned})`);
  const firstTwo = await settlementsAfter(connection, queue, start, 2);
  t.equal(firstTwo.scanned, 2, 'COUNT bounds a scan');
  t.not(firstTwo.lastId, start, 'and says where to read on');
  const rest = await settlementsAfter(connection, queue, firstTwo.lastId, 1000);
  t.equal(rest.scanned, scan.scanned - 2, 'reading on from the last id skips nothing and repeats nothing');
  t.same(rest.lastId, scan.lastId);
  t.equal((await waitForStreamEntries(connection, [[queue.keys.events as string, scan.lastId]], 50)).size, 0, 'nothing after the last id (a short block)');
  t.same(await settlementsAfter(connection, queue, scan.lastId, 1000), { lastId: scan.lastId, scanned: 0, settlements: [] }, 'an empty scan keeps the id');
});

t.test('a queue beside a template runs on the template\'s connection: adds, writes its meta, closes alone; its host shares its keys', async (t) => {
  const own = new Redis(redis.url, { maxRetriesPerRequest: null });
  closing.teardown(() => own.disconnect());
  const besideTemplate = new Queue('template', { connection: own, prefix: 'contract-template', skipVersionCheck: true });
  await besideTemplate.waitUntilReady();
  const listeners = own.listenerCount('error') + own.listenerCount('close') + own.listenerCount('ready');
  const queues = ['c.beside.a', 'c.beside.b'].map((name) => queueBeside(besideTemplate, name, PREFIX));
  const [first, second] = queues as [Queue, Queue];
  t.equal(own.listenerCount('error') + own.listenerCount('close') + own.listenerCount('ready'), listeners, 'no listener on the shared client per queue');
  t.equal(first.getBackend().connection, besideTemplate.getBackend().connection, 'the template\'s connection wrapper, not one of its own');
  t.same(first.keys, new QueueKeys(PREFIX).getKeys('c.beside.a'), 'its keys are the ones BullMQ makes, under the given prefix');
  t.equal(first.toKey('42'), new QueueKeys(PREFIX).toKey('c.beside.a', '42'), 'and so are its job keys');
  t.equal(first.qualifiedName, `${PREFIX}:c.beside.a`);
  const added = await first.add('x', { n: 1 });
  t.equal((await first.getJob(added.id as string))?.data.n, 1, 'adds and reads through the template\'s connection');
  t.equal(await first.getVersion(), `bullmq:${PINNED}`, 'writes its meta once ready, as a queue of its own does');
  t.equal(await connection.exists(metaKey(PREFIX, 'c.beside.a')), 1, 'so the queue is known to Redis');
  const host = jobHost(besideTemplate, first, FETCH);
  t.equal(host.backend.keys, first.keys, 'the host\'s backend reads the queue\'s keys object, not a copy');
  t.equal(host.markerKey, `${PREFIX}:c.beside.a:marker`);
  t.equal((await moveToActive(host, 'tok-beside'))?.job?.id, added.id, 'the host fetches with the worker\'s options');
  t.equal(await connection.get(`${PREFIX}:c.beside.a:${added.id}:lock`), 'tok-beside');
  await first.close();
  t.equal(own.status, 'ready', 'closing a queue beside the template leaves the shared connection open');
  t.ok((await second.add('y', {})).id, 'and the other queues working');
  await second.close();
  await besideTemplate.close();
  t.equal(own.status, 'ready', 'a template on a given connection does not close it either');
});

t.test('a job host runs a worker\'s scripts on a shared connection: moveToActive, settle, locks, stalled check', async (t) => {
  const queue = new Queue('c.host', { connection, prefix: PREFIX });
  closing.teardown(() => queue.close());
  const host = hostOf('c.host');
  t.equal(host.markerKey, `${PREFIX}:c.host:marker`, 'the marker key BullMQ wakes workers with');
  t.same(await moveToActive(host, 'tok-h0'), { job: undefined, delayUntil: 0 }, 'an empty queue: no job');
  const added = await queue.add('x', { n: 1 });
  const marker = await connection.zrange(host.markerKey, '0', '-1', 'WITHSCORES');
  t.same(marker, ['0', '0'], 'an add leaves the marker a blocked BZPOPMIN pops (score 0: work now)');
  const { job } = await moveToActive(host, 'tok-h1');
  t.equal(job?.id, added.id);
  t.same(job?.data, { n: 1 });
  t.equal(job?.token, 'tok-h1');
  t.equal(await connection.get(`${PREFIX}:c.host:${added.id}:lock`), 'tok-h1', 'locked with the token, for lockDuration');
  t.equal(await connection.hget(`${PREFIX}:c.host:${added.id}`, 'pb'), GATEWAY_WORKER_NAME, 'processedBy is the gateway\'s name');
  t.same(await extendLocks(host, [added.id as string, 'nope'], ['tok-h1', 'x'], 60_000), ['nope'], 'extendLocks answers the ids whose lock was lost');
  t.equal(await jobLockedWith(connection, queue, 'tok-h1'), added.id);
  await job!.moveToCompleted('ok', 'tok-h1', false);
  t.equal(await (await queue.getJob(added.id as string))?.getState(), 'completed', 'settled through the host\'s backend');
  const delayed = await queue.add('x', {}, { delay: 60_000 });
  const later = await moveToActive(host, 'tok-h2');
  t.equal(later.job, undefined);
  t.ok(later.delayUntil >= (delayed.timestamp + 60_000) - 1000, 'delayUntil: when the delayed job is due');
  const stalled = await queue.add('x', { n: 2 });
  const taken = await moveToActive(host, 'tok-h3');
  t.equal(taken.job?.id, stalled.id);
  await connection.del(`${PREFIX}:c.host:${stalled.id}:lock`);
  // Each check runs at most once per stalledInterval (BullMQ's stalled-check key): cleared between the two.
  t.same(await moveStalledToWait(host), [], 'the first check only marks it');
  t.same(await moveStalledToWait(host), [], 'a second check within stalledInterval does nothing');
  await connection.del(`${PREFIX}:c.host:stalled-check`);
  t.same(await moveStalledToWait(host), [stalled.id], 'the second check moves it back and says which');
  t.equal(await (await queue.getJob(stalled.id as string))?.getState(), 'waiting', 'a job whose lock expired goes back to wait after two stalled checks');
});

/** What a fetch left in Redis for each job it took, and the queue's events meanwhile. */
async function fetchTrace(name: string, results: (Fetched | Error)[]): Promise<{ jobs: object[]; active: number; events: string[]; marker: string[]; waiting: number }> {
  const jobs = await Promise.all(results.map(async (result) => {
    if (result instanceof Error) return { error: result.message };
    const id = result.job?.id;
    if (id === undefined) return { job: null, delayUntil: result.delayUntil > 0 };
    const [ats, pb] = await connection.hmget(`${PREFIX}:${name}:${id}`, 'ats', 'pb');
    return {
      name: result.job?.name, token: result.job?.token, attemptsStarted: result.job?.attemptsStarted, ats, pb,
      lock: await connection.get(`${PREFIX}:${name}:${id}:lock`),
    };
  }));
  const events = (await connection.xrange(`${PREFIX}:${name}:events`, '-', '+')).map(([, fields]) => fields.filter((_, i) => i % 2 === 1 && fields[i - 1] !== 'jobId').join(' ').replace(/\d{10,}/g, 'TIME'));
  const marker = await connection.zrange(`${PREFIX}:${name}:marker`, '0', '-1');
  const waiting = await connection.llen(`${PREFIX}:${name}:wait`) + await connection.zcard(`${PREFIX}:${name}:prioritized`);
  return { jobs, active: await connection.llen(`${PREFIX}:${name}:active`), events, marker, waiting };
}

t.test('moveManyToActive is BullMQ\'s moveToActive once per token in one call: priorities, delayed, pause, concurrency, rate limit', async (t) => {
  /** The same queue contents twice: one fetched by BullMQ's call token by token, one by the batched call. */
  async function both(label: string, setup: (queue: Queue) => Promise<unknown>, tokens: number): Promise<void> {
    const traces = [];
    for (const way of ['one', 'many'] as const) {
      const name = `c.many.${label}.${way}`;
      const queue = new Queue(name, { connection, prefix: PREFIX });
      closing.teardown(() => queue.close());
      await setup(queue);
      const host = hostOf(name);
      const names = Array.from({ length: tokens }, (_, i) => `tok-${i}`);
      const results: (Fetched | Error)[] = [];
      if (way === 'one') for (const token of names) results.push(await moveToActive(host, token).catch((err: Error) => err));
      else results.push(...await moveManyToActive(host, names));
      traces.push(await fetchTrace(name, results));
    }
    const [one, many] = traces as [Awaited<ReturnType<typeof fetchTrace>>, Awaited<ReturnType<typeof fetchTrace>>];
    // Once nothing waits, the batched call takes back the base marker BullMQ's last run set: it would wake an idle wait for nothing.
    t.same(many, one.waiting === 0 ? { ...one, marker: one.marker.filter((member) => member !== '0') } : one, label);
    if (one.waiting === 0) t.notOk(many.marker.includes('0'), `${label}: no base marker left once nothing waits`);
  }
  await both('priorities', async (queue) => {
    await queue.add('a', {});
    await queue.add('p2', {}, { priority: 2 });
    await queue.add('p1', {}, { priority: 1 });
    await queue.add('later', {}, { delay: 60_000 });
    await queue.add('b', {});
  }, 6);
  await both('due', async (queue) => {
    await queue.add('due', {}, { delay: 1 });
    await queue.add('c', {});
    await new Promise((resolve) => setTimeout(resolve, 20));
  }, 3);
  await both('paused', async (queue) => {
    await queue.add('a', {});
    await queue.pause();
  }, 2);
  await both('concurrency', async (queue) => {
    await queue.setGlobalConcurrency(2);
    for (let i = 0; i < 4; i++) await queue.add(`n${i}`, {});
  }, 4);
  await both('rate-limit', async (queue) => {
    await queue.setGlobalRateLimit(2, 60_000);
    for (let i = 0; i < 4; i++) await queue.add(`n${i}`, {});
  }, 4);
  await both('unreadable', async (queue) => {
    await queue.add('a', {});
    const bad = await queue.add('bad', {});
    await connection.hset(`${PREFIX}:${queue.name}:${bad.id}`, 'opts', '[');
    await queue.add('c', {});
  }, 3);
});

t.test('the batched fetch wraps the installed moveToActive script, and refuses one it does not know', async (t) => {
  const scripts = createRequire(import.meta.url)('bullmq/dist/cjs/scripts/index.js') as Record<string, { content: string; keys: number }>;
  const script = scripts.moveToActive;
  t.ok(script, 'bullmq keeps its scripts where the adapter reads them');
  t.match(moveManyToActiveScript(script), /local function moveOne\(\)/);
  t.throws(() => moveManyToActiveScript(undefined), /moveToActive script is not the one/);
  t.throws(() => moveManyToActiveScript({ ...script!, keys: 12 }), /moveToActive script is not the one/);
  t.throws(() => moveManyToActiveScript({ ...script!, content: script!.content.replace('local isPausedOrMaxed, rateLimitMax', 'local paused, rateLimitMax') }), /not the one/);
});

t.test('completeMany is BullMQ\'s moveToCompleted once per job in one call: results, next jobs, lost locks, removeOnComplete', async (t) => {
  const traces = [];
  for (const way of ['one', 'many'] as const) {
    const name = `c.finish.${way}`;
    const queue = new Queue(name, { connection, prefix: PREFIX });
    closing.teardown(() => queue.close());
    const host = hostOf(name);
    await queue.add('kept', {}, { removeOnComplete: false });
    await queue.add('removed', {}, { removeOnComplete: true });
    await queue.add('lost', {});
    await queue.add('plain', {});
    await queue.add('next1', {});
    await queue.add('next2', {}, { priority: 1 });
    const held = await moveManyToActive(host, ['t0', 't1', 't2', 't3']) as { job: TaskJob }[];
    await connection.del(`${PREFIX}:${name}:${held[2]!.job.id}:lock`);
    const completions = held.map(({ job }, i) => ({ job, result: i === 0 ? { n: i } : null, token: `t${i}`, fetchNext: i === 1 || i === 3 }));
    const replies: unknown[] = [];
    if (way === 'one') {
      for (const c of completions) replies.push(await c.job.moveToCompleted(c.result, c.token, c.fetchNext).catch((err: Error) => err));
    } else {
      replies.push(...await completeMany(host, completions));
    }
    const outcome = await Promise.all(replies.map(async (reply, i) => {
      if (reply instanceof Error) return { error: reply.message, code: (reply as { code?: number }).code };
      const { job: next } = nextJobOf(host, reply, `t${i}`);
      const job = held[i]!.job;
      return {
        next: next?.name ?? null,
        state: await queue.getJobState(job.id as string),
        returnvalue: (await queue.getJob(job.id as string))?.returnvalue ?? null,
        object: { attemptsMade: job.attemptsMade, finished: job.finishedOn! > 0, returnvalue: job.returnvalue ?? null },
      };
    }));
    const events = (await connection.xrange(`${PREFIX}:${name}:events`, '-', '+')).map(([, fields]) => fields.filter((_, i) => i % 2 === 1 && fields[i - 1] !== 'jobId').join(' ').replace(/\d{10,}/g, 'TIME'));
    traces.push({ outcome, events, counts: await queue.getJobCounts('active', 'completed', 'wait', 'prioritized') });
  }
  t.same(traces[1], traces[0]);
  t.match(traces[0], { outcome: [{ state: 'completed', returnvalue: { n: 0 } }, { state: 'unknown', next: 'next1' }, { code: -2 }, { state: 'completed', next: 'next2' }] }, 'kept, removed (fetching the next), a lost lock, then the prioritized next');
});

t.test('the batched ack wraps the installed moveToFinished script, and refuses one it does not know', async (t) => {
  const scripts = createRequire(import.meta.url)('bullmq/dist/cjs/scripts/index.js') as Record<string, { content: string; keys: number }>;
  const script = scripts.moveToFinished;
  t.match(finishManyScript(script), /local function finishOne\(KEYS, ARGV\)/);
  t.throws(() => finishManyScript(undefined), /moveToFinished script is not the one/);
  t.throws(() => finishManyScript({ ...script!, keys: 15 }), /not the one/);
  t.throws(() => finishManyScript({ ...script!, content: script!.content.replace('local rcall = redis.call', 'local rcall = redis.call\nlocal first = KEYS[1]') }), /not the one/, 'a function outside the body reading KEYS would read the whole batch\'s');
  t.throws(() => finishManyScript({ ...script!, content: script!.content.replace('local jobIdKey = KEYS[12]\n', 'local jobIdKey = KEYS[12]\nARGV[9] = ""\n') }), /not the one/, 'each job\'s run refills the same tables: a body writing into ARGV would leave its write to the next job');
});

/** Script calls Redis has run so far (`INFO commandstats`). */
async function scriptCalls(): Promise<number> {
  const info = await connection.info('commandstats');
  return [...info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
}

/** What adds left in Redis: each job's reply (id, or error code) and hash, the queue's lists, marker, id counter and events. */
async function addTrace(name: string, results: (TaskJob | Error)[]): Promise<object> {
  const key = `${PREFIX}:${name}`;
  const jobs = await Promise.all(results.map(async (result) => {
    // Only the code: Redis words an error inside a script's own call differently from one a protected call caught.
    if (result instanceof Error) return { error: result.message.split(' ')[0] };
    const hash = await connection.hgetall(`${key}:${result.id}`);
    return { id: result.id, timestamp: result.timestamp > 0, hash: { ...hash, timestamp: Number(hash.timestamp) > 0 } };
  }));
  const events = (await connection.xrange(`${key}:events`, '-', '+')).map(([, fields]) => fields.join(' ').replace(/\d{10,}/g, 'TIME'));
  return {
    jobs, events,
    wait: await connection.lrange(`${key}:wait`, 0, -1),
    prioritized: await connection.zrange(`${key}:prioritized`, '0', '-1'),
    delayed: await connection.zrange(`${key}:delayed`, '0', '-1'),
    marker: (await connection.zrange(`${key}:marker`, '0', '-1', 'WITHSCORES')).map((value) => value.replace(/^\d{10,}$/, 'TIME')),
    counter: await connection.get(`${key}:id`),
  };
}

t.test('addMany is BullMQ\'s add once per job in one call: hash fields, events, marker, custom and generated ids, an existing id, errors of their own', async (t) => {
  const options = { attempts: 5, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: { count: 1000 }, removeOnFail: false, stackTraceLimit: 50 };
  /** The same adds to the same queue contents twice: BullMQ's add one by one, then the batched call. */
  async function both(label: string, setup: (queue: Queue) => Promise<unknown>, jobs: NewJob[]): Promise<object[]> {
    const traces = [];
    for (const way of ['one', 'many'] as const) {
      const name = `c.add.${label}.${way}`;
      const queue = new Queue(name, { connection, prefix: PREFIX });
      closing.teardown(() => queue.close());
      await setup(queue);
      const waiting: string[] = [];
      queue.on('waiting', (job) => waiting.push(job.id as string));
      const results: (TaskJob | Error)[] = [];
      if (way === 'one') {
        for (const job of jobs) results.push(await queue.add(job.name, job.data, job.opts).catch((err: Error) => err));
      } else {
        const before = await scriptCalls();
        results.push(...await addMany(queue as never, jobs));
        // The first batch also loads the script (EVALSHA, NOSCRIPT, then EVAL).
        t.ok(await scriptCalls() - before <= (label === 'standard' ? 2 : 1), `${label}: one script call for ${jobs.length} adds`);
      }
      traces.push({ ...await addTrace(name, results), waiting });
    }
    t.same(traces[1], traces[0], label);
    return traces;
  }
  const [standard] = await both('standard', async (queue) => {
    await queue.add('old', { old: true }, { jobId: 'existing' });
    await connection.set(`${PREFIX}:${queue.name}:wrong-type`, 'not a hash');
  }, [
    { name: 'a', data: { n: 1 }, opts: { ...options, jobId: 'a1', replyTo: 'r.x', timeout: 500, traceparent: `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01`, stream: true } },
    { name: 'generated', data: 'text', opts: {} },
    { name: 'again', data: { changed: true }, opts: { jobId: 'existing' } },
    { name: 'bad', data: {}, opts: { jobId: 'wrong-type' } },
    { name: 'integer', data: {}, opts: { jobId: '42' } },
    { name: 'last', data: [1, 2], opts: { ...options, jobId: 'z9', lifo: true } },
  ]);
  t.match(standard, {
    jobs: [{ id: 'a1' }, { id: '3' }, { id: 'existing', hash: { name: 'old' } }, { error: 'WRONGTYPE' }, { error: 'Custom' }, { id: 'z9' }],
    wait: ['3', 'a1', 'existing', 'z9'],
    marker: ['0', '0'],
    counter: '6',
  }, 'stored as given; a second add of an id keeps the first (duplicated); one job\'s error is its own');
  t.ok((standard as { events: string[] }).events.some((event) => event.startsWith('event duplicated jobId existing')), 'the duplicate is an event, as BullMQ adds it');
  await both('paused', (queue) => queue.pause(), [
    { name: 'a', data: {}, opts: { jobId: 'a1' } },
    { name: 'b', data: {}, opts: { jobId: 'b1' } },
  ]);
  await both('concurrency', (queue) => queue.setGlobalConcurrency(1), [
    { name: 'a', data: {}, opts: { jobId: 'a1' } },
    { name: 'b', data: {}, opts: { jobId: 'b1' } },
  ]);
});

t.test('addMany sends a delayed or prioritized job as BullMQ does, in its place among the batched ones', async (t) => {
  const traces = [];
  for (const way of ['one', 'many'] as const) {
    const name = `c.add.mixed.${way}`;
    const queue = new Queue(name, { connection, prefix: PREFIX });
    closing.teardown(() => queue.close());
    const jobs: NewJob[] = [
      { name: 'a', data: {}, opts: {} },
      { name: 'b', data: {}, opts: { jobId: 'same' } },
      { name: 'later', data: {}, opts: { jobId: 'd1', delay: 60_000 } },
      { name: 'first', data: {}, opts: { jobId: 'p1', priority: 3 } },
      { name: 'c', data: {}, opts: {} },
      { name: 'again', data: {}, opts: { jobId: 'same', delay: 60_000 } },
    ];
    const results: (TaskJob | Error)[] = [];
    if (way === 'one') for (const job of jobs) results.push(await queue.add(job.name, job.data, job.opts));
    else results.push(...await addMany(queue as never, jobs));
    traces.push({ ...await addTrace(name, results), states: await Promise.all(results.map((job) => queue.getJobState((job as TaskJob).id as string))) });
  }
  t.same(traces[1], traces[0], 'the same ids, events and lists, in the same order');
  t.match(traces[0], { states: ['waiting', 'waiting', 'delayed', 'prioritized', 'waiting', 'waiting'], jobs: [{ id: '1' }, {}, {}, {}, { id: '5' }, { id: 'same', hash: { name: 'b' } }] }, 'a later delayed add of an id kept as waiting keeps the first');
});

t.test('the batched enqueue wraps the installed addStandardJob script, and refuses one it does not know', async (t) => {
  const scripts = createRequire(import.meta.url)('bullmq/dist/cjs/scripts/index.js') as Record<string, { content: string; keys: number }>;
  const script = scripts.addStandardJob;
  t.match(addManyScript(script), /^local function addOne\(KEYS, ARGV\)/);
  t.throws(() => addManyScript(undefined), /addStandardJob script is not the one/);
  t.throws(() => addManyScript({ ...script!, keys: 10 }), /not the one/);
  t.throws(() => addManyScript({ ...script!, content: `#!lua flags=allow-oom\n${script!.content}` }), /not the one/, 'script flags must stay on its first line');
});

t.test('popMarkers takes the markers set among many queues in one call, as BZPOPMIN takes one', async (t) => {
  const busy = new Queue('c.markers.busy', { connection, prefix: PREFIX });
  const later = new Queue('c.markers.later', { connection, prefix: PREFIX });
  const empty = hostOf('c.markers.empty');
  closing.teardown(() => busy.close());
  closing.teardown(() => later.close());
  await busy.add('x', {});
  const due = Date.now() + 60_000;
  await later.add('x', {}, { delay: due - Date.now() });
  const keys = [hostOf('c.markers.busy').markerKey, hostOf('c.markers.later').markerKey, empty.markerKey];
  const popped = await popMarkers(connection, keys);
  t.same([...popped.keys()].sort(), keys.slice(0, 2).sort(), 'the two queues with a marker, not the empty one');
  t.equal(popped.get(keys[0]!), 0, 'work now');
  t.ok(Math.abs(popped.get(keys[1]!)! - due) < 1000, 'a delayed job: the time it is due');
  t.same([...(await popMarkers(connection, keys)).keys()], [], 'taken: a second call finds none');
});

t.test('readJob and repairUnreadable: a hash BullMQ cannot read becomes a job delivery refuses, its bad fields kept', async (t) => {
  const queue = new Queue('c.unreadable', { connection, prefix: PREFIX });
  closing.teardown(() => queue.close());
  const host = hostOf('c.unreadable');
  const added = await queue.add('x', { ok: 1 });
  await connection.hset(`${PREFIX}:c.unreadable:${added.id}`, 'data', '{nope');
  const { job } = await moveToActive(host, 'tok-u');
  t.match(deliveryFlaw(job!), /^undeliverable: its data is not JSON/);
  t.same(await repairUnreadable(connection, queue, added.id as string, 'tok-u'), { fields: ['data'] });
  t.equal(await connection.hget(`${PREFIX}:c.unreadable:${added.id}`, 'unreadable:data'), '{nope');
  const opts = await queue.add('x', {});
  await connection.hset(`${PREFIX}:c.unreadable:${opts.id}`, 'opts', '[');
  await t.rejects(moveToActive(host, 'tok-o'), 'BullMQ itself throws on opts that are not JSON');
  t.equal(await jobLockedWith(connection, queue, 'tok-o'), opts.id, 'the job it moved to active is found by its lock');
  t.same(await repairUnreadable(connection, queue, opts.id as string, 'tok-o'), { fields: ['opts'] });
  const gone = await queue.add('x', {});
  await connection.del(`${PREFIX}:c.unreadable:${gone.id}`);
  const fetched = await moveToActive(host, 'tok-g');
  t.equal(fetched.job?.id, gone.id, 'a job without a hash still comes out of moveToActive');
  t.match(deliveryFlaw(fetched.job!), /hash is gone/);
  // moveToActive writes its own fields (ats, pb, processedOn) into the hash it found gone: nothing to repair,
  // and the job (without a timestamp) is failed as undeliverable (test/hostile-names.test.ts).
  t.same(await repairUnreadable(connection, queue, gone.id as string, 'tok-g'), { fields: [] });
  t.equal(await connection.hget(`${PREFIX}:c.unreadable:${gone.id}`, 'timestamp'), null);
});
