import { type BulkAnswer, BulkLane, type BulkTransport, type PointOperation, type PointResult, RANGE_CHECK_MS } from '../../../shared/catalog/bulkLane';

/** Settles when every promise callback queued so far (and those they queue) has run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A transport whose every request waits until the test answers it. */
class HeldTransport implements BulkTransport {
  readonly sent: ({ kind: 'alone'; op: PointOperation; answer: (r: PointResult | Error) => void } | { kind: 'bulk'; ops: PointOperation[]; rangeId: string; answer: (r: BulkAnswer | Error) => void })[] = [];
  rangeReads = 0;
  rangeIds: string[] | undefined = ['0'];

  alone(op: PointOperation): Promise<PointResult> {
    return new Promise((resolve, reject) => this.sent.push({ kind: 'alone', op, answer: (r) => (r instanceof Error ? reject(r) : resolve(r)) }));
  }

  bulk(ops: PointOperation[], rangeId: string): Promise<BulkAnswer> {
    return new Promise((resolve, reject) => this.sent.push({ kind: 'bulk', ops, rangeId, answer: (r) => (r instanceof Error ? reject(r) : resolve(r)) }));
  }

  async ranges(): Promise<string[] | undefined> {
    this.rangeReads += 1;
    return this.rangeIds;
  }

  /** Answers every request still open: a create with an ETag named after its document, a read with a document named after its id. */
  answerAll(): void {
    for (const s of this.sent.splice(0)) {
      if (s.kind === 'alone') s.answer(resultOf(s.op));
      else s.answer({ outcomes: s.ops.map((op) => ({ kind: 'done', result: resultOf(op) })) });
    }
  }
}

function resultOf(op: PointOperation): PointResult {
  return op.kind === 'create' ? { etag: `"${op.body}"` } : { resource: { id: op.id, _etag: `"${op.id}"` } };
}

const create = (n: number): PointOperation => ({ kind: 'create', body: `doc${n}`, partitionKey: `pk${n}` });
const read = (n: number): PointOperation => ({ kind: 'read', id: `doc${n}`, partitionKey: `pk${n}` });

/** Starts `n` creates at once, the first of them alone; the check of ranges that their overlap starts is let finish. */
async function overlapping(lane: BulkLane, t: HeldTransport, from: number, n: number): Promise<Promise<PointResult>[]> {
  const all = Array.from({ length: n }, (_, i) => lane.send(create(from + i)));
  await settle();
  expect(t.rangeReads).toBeGreaterThan(0);
  return all;
}

type SentBulk = Extract<HeldTransport['sent'][number], { kind: 'bulk' }>;

/** Queues `ops` behind the first overlap's two requests, lets those come back, and takes the bulk request the queued ones left in. */
async function queuedBehindOverlap(lane: BulkLane, t: HeldTransport, ops: PointOperation[]): Promise<{ waiting: Promise<PointResult>[]; bulk: SentBulk }> {
  const first = await overlapping(lane, t, 0, 2);
  const waiting = ops.map((op) => lane.send(op));
  t.answerAll();
  await Promise.all(first);
  await settle();
  expect(t.sent.map((s) => s.kind)).toEqual(['bulk']);
  return { waiting, bulk: t.sent.shift() as SentBulk };
}

describe('BulkLane (point requests of one container, batched under load)', () => {
  it('given creates one after the other, then each goes alone and the ranges are never read', async () => {
    const t = new HeldTransport();
    const lane = new BulkLane(t, { inFlight: 1 });
    for (let i = 0; i < 3; i++) {
      const p = lane.send(create(i));
      t.answerAll();
      await expect(p).resolves.toEqual({ etag: `"doc${i}"` });
    }
    expect(t.rangeReads).toBe(0);
    expect(lane.counts).toEqual({ alone: 3, bulk: 0, bulkOperations: 0 });
  });

  it('given creates that arrive while one is out, then they wait and leave as one bulk request to the single range when it is back, each settled with its own outcome', async () => {
    const t = new HeldTransport();
    t.rangeIds = ['7'];
    const lane = new BulkLane(t, { inFlight: 1 });
    // The first overlap finds no range known yet: both go alone, and the ranges are read.
    const first = await overlapping(lane, t, 0, 2);
    expect(t.sent.map((s) => s.kind)).toEqual(['alone', 'alone']);
    // Now known: creates behind the two out wait.
    const conflict = new Error('409');
    const waiting = [lane.send(create(2)), lane.send(create(3)), lane.send(create(4)), lane.send(create(5))];
    const settled = Promise.allSettled(waiting);
    expect(t.sent).toHaveLength(2);
    t.answerAll();
    await Promise.all(first);
    await settle();
    expect(t.sent.map((s) => s.kind)).toEqual(['bulk']);
    const bulk = t.sent[0] as SentBulk;
    expect(bulk.rangeId).toBe('7');
    expect(bulk.ops.map((c) => (c as { body: string }).body)).toEqual(['doc2', 'doc3', 'doc4', 'doc5']);
    t.sent.splice(0);
    bulk.answer({ outcomes: [{ kind: 'done', result: { etag: '"a"' } }, { kind: 'failed', error: conflict }, { kind: 'again' }, { kind: 'done', result: { etag: '"d"' } }] });
    await settle();
    // The operation not carried out goes again, alone.
    expect(t.sent.map((s) => (s.kind === 'alone' ? (s.op as { body: string }).body : s.kind))).toEqual(['doc4']);
    t.answerAll();
    expect(await settled).toEqual([
      { status: 'fulfilled', value: { etag: '"a"' } },
      { status: 'rejected', reason: conflict },
      { status: 'fulfilled', value: { etag: '"doc4"' } },
      { status: 'fulfilled', value: { etag: '"d"' } },
    ]);
    expect(lane.counts).toEqual({ alone: 3, bulk: 1, bulkOperations: 4 });
  });

  it('given a waiting create on its own when the request out is back, then it goes alone, not as a bulk of one', async () => {
    const t = new HeldTransport();
    const lane = new BulkLane(t, { inFlight: 1 });
    await Promise.all((await overlapping(lane, t, 0, 2)).map(async (p) => (t.answerAll(), p)));
    const out = lane.send(create(2));
    const behind = lane.send(create(3));
    expect(t.sent.map((s) => s.kind)).toEqual(['alone']);
    t.answerAll();
    await out;
    await settle();
    expect(t.sent.map((s) => s.kind)).toEqual(['alone']);
    t.answerAll();
    await expect(behind).resolves.toEqual({ etag: '"doc3"' });
    expect(lane.counts.bulk).toBe(0);
  });

  it('given more than one range, then every create goes alone however many overlap, and the ranges are read again only after RANGE_CHECK_MS', async () => {
    let now = 1_000;
    const t = new HeldTransport();
    t.rangeIds = ['0', '1'];
    const lane = new BulkLane(t, { inFlight: 1, now: () => now });
    const all = [...(await overlapping(lane, t, 0, 3)), lane.send(create(3)), lane.send(create(4))];
    expect(t.sent.map((s) => s.kind)).toEqual(['alone', 'alone', 'alone', 'alone', 'alone']);
    t.answerAll();
    await Promise.all(all);
    expect(t.rangeReads).toBe(1);
    now += RANGE_CHECK_MS + 1;
    t.rangeIds = ['0'];
    const later = await overlapping(lane, t, 5, 2);
    expect(t.rangeReads).toBe(2);
    t.answerAll();
    await Promise.all(later);
  });

  it('given ranges that cannot be read, then creates go alone until the next check', async () => {
    const t = new HeldTransport();
    t.ranges = async () => {
      t.rangeReads += 1;
      throw new Error('403');
    };
    const lane = new BulkLane(t, { inFlight: 1 });
    const all = [...(await overlapping(lane, t, 0, 2)), lane.send(create(2))];
    expect(t.sent.map((s) => s.kind)).toEqual(['alone', 'alone', 'alone']);
    t.answerAll();
    await Promise.all(all);
    expect(t.rangeReads).toBe(1);
  });

  it.each([
    ['gone (410: the range split)', 'gone' as const, 2],
    ['refused (400)', 'bad-request' as const, 1],
    ['answered otherwise (429, 503, ...)', 'other' as const, 1],
  ])('given a bulk request %s, then its creates go again alone, and the ranges are read again only when gone', async (_what, refused, readsAfter) => {
    const t = new HeldTransport();
    const lane = new BulkLane(t, { inFlight: 1 });
    const { waiting, bulk } = await queuedBehindOverlap(lane, t, [create(2), create(3)]);
    bulk.answer({ refused });
    await settle();
    expect(t.sent.map((s) => (s.kind === 'alone' ? (s.op as { body: string }).body : s.kind))).toEqual(['doc2', 'doc3']);
    t.answerAll();
    await expect(Promise.all(waiting)).resolves.toEqual([{ etag: '"doc2"' }, { etag: '"doc3"' }]);
    // The next overlap: a new check only after a 410; after a 400 creates keep going alone until the next check is due.
    const next = [lane.send(create(4)), lane.send(create(5)), lane.send(create(6))];
    await settle();
    expect(t.rangeReads).toBe(readsAfter);
    if (refused === 'bad-request') expect(t.sent.map((s) => s.kind)).toEqual(['alone', 'alone', 'alone']);
    t.answerAll();
    await settle();
    t.answerAll();
    await Promise.all(next);
  });

  it('given a bulk request that gets no answer, then each of its creates fails with that error and none is sent again', async () => {
    const t = new HeldTransport();
    const lane = new BulkLane(t, { inFlight: 1 });
    const { waiting, bulk } = await queuedBehindOverlap(lane, t, [create(2), create(3)]);
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    bulk.answer(reset);
    const results = await Promise.allSettled(waiting);
    expect(results).toEqual([
      { status: 'rejected', reason: reset },
      { status: 'rejected', reason: reset },
    ]);
    await settle();
    expect(t.sent).toHaveLength(0);
  });

  it('given an answer with fewer results than operations, then every create goes again alone', async () => {
    const t = new HeldTransport();
    const lane = new BulkLane(t, { inFlight: 1 });
    const { waiting, bulk } = await queuedBehindOverlap(lane, t, [create(2), create(3)]);
    bulk.answer({ outcomes: [{ kind: 'done', result: { etag: '"x"' } }] });
    await settle();
    expect(t.sent.map((s) => s.kind)).toEqual(['alone', 'alone']);
    t.answerAll();
    await expect(Promise.all(waiting)).resolves.toEqual([{ etag: '"doc2"' }, { etag: '"doc3"' }]);
  });

  it('given more creates waiting than one request may carry, then they leave in requests of at most 100 operations and 1 MiB', async () => {
    const t = new HeldTransport();
    const lane = new BulkLane(t, { inFlight: 1 });
    const first = await overlapping(lane, t, 0, 2);
    const small = Array.from({ length: 150 }, (_, i) => lane.send(create(10 + i)));
    const big = Array.from({ length: 3 }, (_, i) => lane.send({ kind: 'create', body: 'x'.repeat(400 * 1024 + i), partitionKey: 'p' }));
    t.answerAll();
    await Promise.all(first);
    const sizes: number[] = [];
    for (let round = 0; round < 10 && sizes.reduce((a, b) => a + b, 0) < 153; round++) {
      await settle();
      for (const s of t.sent) sizes.push(s.kind === 'bulk' ? s.ops.length : 1);
      t.answerAll();
    }
    // 100, then the other 50 with the two large documents that fit (1 MiB), then the third.
    expect(sizes).toEqual([100, 52, 1]);
    await Promise.all([...small, ...big]);
  });

  it('given reads and creates that overlap, then they leave in one bulk request in the order they came, each settled with its own result', async () => {
    const t = new HeldTransport();
    const lane = new BulkLane(t, { inFlight: 1 });
    const { waiting, bulk } = await queuedBehindOverlap(lane, t, [read(2), create(3), read(4)]);
    expect(bulk.ops).toEqual([read(2), create(3), read(4)]);
    bulk.answer({ outcomes: [{ kind: 'done', result: { resource: { id: 'doc2', _etag: '"r2"' } } }, { kind: 'done', result: { etag: '"c3"' } }, { kind: 'done', result: { resource: undefined } }] });
    await expect(Promise.all(waiting)).resolves.toEqual([{ resource: { id: 'doc2', _etag: '"r2"' } }, { etag: '"c3"' }, { resource: undefined }]);
  });

  it('given a bulk request of reads and creates that gets no answer, then its reads are sent again alone and its creates fail', async () => {
    const t = new HeldTransport();
    const lane = new BulkLane(t, { inFlight: 1 });
    const queued = await queuedBehindOverlap(lane, t, [read(2), create(3)]);
    const waiting = Promise.allSettled(queued.waiting);
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    queued.bulk.answer(reset);
    await settle();
    expect(t.sent.map((s) => (s.kind === 'alone' ? s.op : s.kind))).toEqual([read(2)]);
    t.answerAll();
    expect(await waiting).toEqual([
      { status: 'fulfilled', value: { resource: { id: 'doc2', _etag: '"doc2"' } } },
      { status: 'rejected', reason: reset },
    ]);
  });

  it('given inFlight 0, then every create goes alone, overlapping or not, and no range is read', async () => {
    const t = new HeldTransport();
    const lane = new BulkLane(t, { inFlight: 0 });
    const all = Array.from({ length: 5 }, (_, i) => lane.send(create(i)));
    await settle();
    expect(t.sent.map((s) => s.kind)).toEqual(['alone', 'alone', 'alone', 'alone', 'alone']);
    t.answerAll();
    await Promise.all(all);
    expect(t.rangeReads).toBe(0);
  });
});
