import { once } from 'node:events';
import t from 'tap';
import WebSocket from 'ws';
import { TickFrameBatch, type FrameSink } from '../src/bus/tick-frame-batch.js';
import { startGateway } from './helpers/gateway.js';
import { until } from './helpers/test-socket.js';

/** A sink that records what it was asked to write. */
class RecordingSink implements FrameSink {
  frames: Buffer[] = [];
  readonly written: { frames: Buffer[]; joined: Buffer }[] = [];

  constructor(private readonly batch: TickFrameBatch) {}

  send(frame: Buffer): void {
    if (this.frames.push(frame) === 1) this.batch.add(this);
  }

  takeFrames(): { frames: Buffer[]; bytes: number } | null {
    if (this.frames.length === 0) return null;
    const frames = this.frames;
    this.frames = [];
    return { frames, bytes: frames.reduce((sum, f) => sum + f.length, 0) };
  }

  writeFrames(frames: Buffer[], joined: Buffer): void {
    this.written.push({ frames, joined });
  }
}

t.test('a tick\'s frames leave joined; sinks that got the same frames share one joined buffer', async (t) => {
  const batch = new TickFrameBatch();
  const [a, b, c, single] = [1, 2, 3, 4].map(() => new RecordingSink(batch)) as [RecordingSink, RecordingSink, RecordingSink, RecordingSink];
  const [one, two, three] = ['one', 'two', 'three'].map((s) => Buffer.from(s)) as [Buffer, Buffer, Buffer];
  for (const frame of [one, two, three]) {
    a.send(frame);
    b.send(frame);
  }
  c.send(one);
  c.send(three);
  single.send(two);
  t.same([a.written, b.written, c.written, single.written], [[], [], [], []], 'nothing is written before the tick ends');
  await new Promise((resolve) => process.nextTick(resolve));

  t.equal(a.written.length, 1, 'one write per sink');
  t.equal(a.written[0]?.joined.toString(), 'onetwothree', 'the frames end to end, in order');
  t.equal(b.written[0]?.joined, a.written[0]?.joined, 'the same frames in the same order: the same buffer, joined once');
  t.equal(c.written[0]?.joined.toString(), 'onethree', 'other frames: a buffer of its own');
  t.equal(single.written[0]?.joined, two, 'a single frame is written as it is');
});

t.test('a sink whose frames were taken during the tick is skipped at its end', async (t) => {
  const batch = new TickFrameBatch();
  const sink = new RecordingSink(batch);
  sink.send(Buffer.from('early'));
  t.same(sink.takeFrames()?.frames.map(String), ['early'], 'taken (as a receipt sent meanwhile does)');
  sink.send(Buffer.from('late'));
  await new Promise((resolve) => process.nextTick(resolve));
  t.same(sink.written.map((w) => w.joined.toString()), ['late'], 'only what came after, once');
});

t.test('on the bus: a burst reaches every subscriber complete and in order, a receipt after the events sent before it', async (t) => {
  const gw = await startGateway(t);
  const open = async (): Promise<{ ws: WebSocket; frames: Record<string, unknown>[] }> => {
    const ws = new WebSocket(gw.busUrl);
    const frames: Record<string, unknown>[] = [];
    ws.on('message', (data: Buffer) => frames.push(JSON.parse(data.toString()) as Record<string, unknown>));
    await once(ws, 'open');
    t.teardown(() => ws.terminate());
    return { ws, frames };
  };
  const subscribe = async (client: { ws: WebSocket; frames: Record<string, unknown>[] }, topic: string) => {
    client.ws.send(JSON.stringify({ action: 'subscribe', topic, id: `sub-${topic}` }));
    await until(() => client.frames.some((f) => f.id === `sub-${topic}`), 5000, `the ${topic} subscription`);
    client.frames.length = 0;
  };
  const all = await Promise.all([open(), open(), open()]);
  const odd = await open();
  for (const client of all) await subscribe(client, 'burst.>');
  await subscribe(odd, 'burst.odd');
  const publisher = all[0];

  // One synchronous burst: the frames reach the gateway in one or a few reads.
  for (let n = 0; n < 200; n++) {
    const type = n % 2 === 1 ? 'burst.odd' : 'burst.even';
    publisher.ws.send(JSON.stringify({ action: 'publish', message: { type, payload: n }, ...(n === 99 ? { id: 'mid' } : {}) }));
  }
  await until(() => all.every((c) => c.frames.filter((f) => 'event' in f).length === 200) && odd.frames.length === 100, 5000, 'every event');

  const payloads = (frames: Record<string, unknown>[]) => frames.filter((f) => 'event' in f).map((f) => (f.event as { payload: number }).payload);
  const everything = Array.from({ length: 200 }, (_, n) => n);
  for (const [i, client] of all.entries()) t.same(payloads(client.frames), everything, `subscriber ${i}: all 200, in order`);
  t.same(payloads(odd.frames), everything.filter((n) => n % 2 === 1), 'a subscriber of part of them: its part, in order');
  const receiptAt = publisher.frames.findIndex((f) => f.id === 'mid');
  t.equal(receiptAt, 100, 'the receipt of publish 99 comes right after its own event, before the 100 events published after it');
});
