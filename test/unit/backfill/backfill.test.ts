import { type BackfillCheckpoint, type BackfillCheckpointStore, type BackfillEvent, backfillEventId, type BackfillPage, type BackfillProgress, type PublishedEvent, runBackfill, type SourceLister } from '../../../shared/backfill/backfill';
import { ErrorCodes, PipelineError } from '../../../shared/errors';
import { sourceId } from '../../../shared/ingest/ingestSourceFile';
import { renderProgress } from '../../../tools/progressBar';

const files = (n: number) => Array.from({ length: n }, (_, i) => ({ url: `https://acct.blob.core.windows.net/anq-replica/f${String(i).padStart(6, '0')}.dcm`, etag: `"0x${i}"`, size: 100 + i }));

class ArrayLister implements SourceLister {
  readonly name = 'blob:acct/anq-replica';
  pagesListed = 0;
  constructor(private readonly items: ReturnType<typeof files>) {}
  async listPage(cursor: string | undefined, pageSize: number): Promise<BackfillPage> {
    this.pagesListed++;
    const from = cursor ? Number(cursor) : 0;
    const to = Math.min(this.items.length, from + pageSize);
    return { items: this.items.slice(from, to), ...(to < this.items.length ? { next: String(to) } : {}) };
  }
}

class MemoryCheckpoints implements BackfillCheckpointStore {
  stored?: { checkpoint: BackfillCheckpoint; etag: string };
  writes = 0;
  async read() { return this.stored && { checkpoint: structuredClone(this.stored.checkpoint), etag: this.stored.etag }; }
  async write(checkpoint: BackfillCheckpoint, etag: string | undefined) {
    if (this.stored?.etag !== etag) throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'changed');
    this.writes++;
    this.stored = { checkpoint: structuredClone(checkpoint), etag: String(this.writes) };
    return this.stored.etag;
  }
}

/** The topic and the ingestion behind it: an event for a version makes the index hold it (once). */
class IngestingTopic {
  readonly index = new Map<string, { status: string; eTag: string }>();
  readonly published: BackfillEvent[] = [];
  ingestions = 0;
  failAfter = Infinity;
  async publish(events: BackfillEvent[]) {
    if (this.published.length + events.length > this.failAfter) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'topic unavailable');
    for (const e of events) {
      this.published.push(e);
      const id = sourceId(e.data.url);
      if (this.index.get(id)?.eTag === e.data.eTag) continue; // the version is already done: "unchanged"
      this.ingestions++;
      this.index.set(id, { status: 'cataloged', eTag: e.data.eTag });
    }
  }
  lookup() { return { get: async (id: string) => { const d = this.index.get(id); return d && { doc: d as { status: 'cataloged'; eTag: string } }; } }; }
}

describe('runBackfill', () => {
  test('given 1,000 files in pages of 64, then each gets one event with its URL and ETag, in listing order, and the checkpoint ends done', async () => {
    const items = files(1000);
    const topic = new IngestingTopic();
    const checkpoints = new MemoryCheckpoints();
    const cp = await runBackfill({ lister: new ArrayLister(items), sink: topic, checkpoints, index: topic.lookup() }, { pageSize: 64, batchSize: 10, concurrency: 4 });
    expect(cp.done).toBe(true);
    expect(cp.counts).toEqual({ listed: 1000, emitted: 1000, skipped: 0 });
    expect(topic.published.map((e) => e.data.url).sort()).toEqual(items.map((i) => i.url));
    expect(topic.published[0]).toMatchObject({ type: 'VNA.Archive.FileReplicated', id: backfillEventId(items[0]!.url, items[0]!.etag), data: { url: items[0]!.url, eTag: items[0]!.etag } });
    expect(new Set(topic.published.map((e) => e.id)).size).toBe(1000);
  });

  test('given a run stopped by a topic failure and then resumed, then no file is missed and none is ingested twice', async () => {
    const items = files(777);
    const topic = new IngestingTopic();
    const checkpoints = new MemoryCheckpoints();
    const deps = { lister: new ArrayLister(items), sink: topic, checkpoints, index: topic.lookup() };
    topic.failAfter = 333;
    await expect(runBackfill(deps, { pageSize: 100, batchSize: 7, concurrency: 3 })).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
    const mid = checkpoints.stored?.checkpoint;
    expect(mid?.done).toBe(false);
    expect((mid?.counts.emitted ?? 0) + (mid?.counts.skipped ?? 0)).toBeLessThanOrEqual(333);
    topic.failAfter = Infinity;
    const cp = await runBackfill(deps, { pageSize: 100, batchSize: 7, concurrency: 3 });
    expect(cp.done).toBe(true);
    expect(topic.ingestions).toBe(777);
    expect(new Set(topic.published.map((e) => e.data.url)).size).toBe(777);
    // What the failed run had emitted past its checkpoint was skipped on resume (the index held it), not emitted again.
    expect(topic.published.length).toBe(777);
  });

  test('given a run stopped by its time budget, then the next run resumes from the checkpoint without listing from the start', async () => {
    const items = files(500);
    const topic = new IngestingTopic();
    const checkpoints = new MemoryCheckpoints();
    const lister = new ArrayLister(items);
    let clock = 0;
    const deps = { lister, sink: { publish: async (e: BackfillEvent[]) => { clock += 10; await topic.publish(e); } }, checkpoints, index: topic.lookup(), now: () => clock };
    const first = await runBackfill(deps, { pageSize: 50, batchSize: 5, concurrency: 1, maxRunMs: 300 });
    expect(first.done).toBe(false);
    const pagesBefore = lister.pagesListed;
    clock = 0;
    const second = await runBackfill({ ...deps, now: () => clock }, { pageSize: 50, batchSize: 5, concurrency: 1 });
    expect(second.done).toBe(true);
    expect(lister.pagesListed - pagesBefore).toBe(10 - Math.floor((first.counts.emitted) / 50));
    expect(topic.ingestions).toBe(500);
    expect(topic.published.length).toBe(500);
  });

  test('given versions the index already holds, then they are skipped; a changed version is emitted', async () => {
    const items = files(100);
    const topic = new IngestingTopic();
    for (const it of items.slice(0, 60)) topic.index.set(sourceId(it.url), { status: 'cataloged', eTag: it.etag });
    topic.index.set(sourceId(items[0]!.url), { status: 'cataloged', eTag: '"older"' });
    // The index keeps ETags as reads give them (quoted), listings give them bare.
    topic.index.set(sourceId(items[1]!.url), { status: 'cataloged', eTag: `"${items[1]!.etag.replace(/"/g, '')}"` });
    items[1] = { ...items[1]!, etag: items[1]!.etag.replace(/"/g, '') };
    const cp = await runBackfill({ lister: new ArrayLister(items), sink: topic, checkpoints: new MemoryCheckpoints(), index: topic.lookup() }, { pageSize: 30 });
    expect(cp.counts).toEqual({ listed: 100, emitted: 41, skipped: 59 });
    expect(topic.published.map((e) => e.data.url)).toContain(items[0]!.url);
  });

  test('given a rate of 100 events/s, then 300 events take at least 3 s of (fake) time', async () => {
    let clock = 0;
    const topic = new IngestingTopic();
    const cp = await runBackfill(
      { lister: new ArrayLister(files(300)), sink: topic, checkpoints: new MemoryCheckpoints(), index: topic.lookup(), now: () => clock, sleep: async (ms) => { clock += ms; } },
      { ratePerSecond: 100, batchSize: 10, concurrency: 1 },
    );
    expect(cp.done).toBe(true);
    expect(clock).toBeGreaterThanOrEqual(2900);
    expect(clock).toBeLessThan(3200);
  });

  test('given a checkpoint of another source, then it refuses to run on it', async () => {
    const checkpoints = new MemoryCheckpoints();
    const topic = new IngestingTopic();
    await runBackfill({ lister: new ArrayLister(files(3)), sink: topic, checkpoints, index: topic.lookup() }, {});
    const other = new ArrayLister(files(3));
    Object.defineProperty(other, 'name', { value: 'blob:other/container' });
    await expect(runBackfill({ lister: other, sink: topic, checkpoints, index: topic.lookup() }, {})).rejects.toMatchObject({ code: ErrorCodes.CONFIG_INVALID });
  });

  test('given countFirst, then progress carries the total, a rate and an ETA, and ends done', async () => {
    let clock = 0;
    const seen: BackfillProgress[] = [];
    const topic = new IngestingTopic();
    await runBackfill(
      { lister: new ArrayLister(files(200)), sink: { publish: async (e) => { clock += 100; await topic.publish(e as BackfillEvent[]); } }, checkpoints: new MemoryCheckpoints(), index: topic.lookup(), now: () => clock, onProgress: (p) => seen.push(p) },
      { countFirst: true, batchSize: 10, concurrency: 1, pageSize: 50 },
    );
    expect(seen.every((p) => p.total === 200)).toBe(true);
    const mid = seen.find((p) => p.emitted === 100);
    expect(mid?.rate).toBeCloseTo(100, 0);
    expect(mid?.etaSeconds).toBeCloseTo(1, 1);
    expect(seen.at(-1)?.done).toBe(true);
    expect(renderProgress(mid as BackfillProgress, 20)).toMatch(/^\[#{10}\.{10}\] {2}50\.0% 100\/200 files {2}100\/s {2}ETA 0:01 {2}\(emitted 100, skipped 0\)$/);
  });
});

describe('runBackfill: re-index under a new key or profile', () => {
  const k1 = { keyId: 'k1', profile: 'research-default', profileVersion: '1.2.0', profileDigest: 'd1' };
  const k2 = { ...k1, keyId: 'k2' };
  /** An index of versions cataloged under `k1`, one failed and one under `k2` already. */
  function indexOf(items: ReturnType<typeof files>) {
    const docs = new Map<string, { status: 'cataloged' | 'failed'; eTag: string; deidentification?: typeof k1 & { actions: Record<string, number>; gate: 'passed' } }>();
    items.forEach((it, i) => docs.set(sourceId(it.url), {
      status: i === 0 ? 'failed' : 'cataloged',
      eTag: it.etag,
      ...(i === 0 ? {} : { deidentification: { ...(i === 1 ? k2 : k1), actions: {}, gate: 'passed' as const } }),
    }));
    return { docs, lookup: { get: async (id: string) => { const d = docs.get(id); return d && { doc: d }; } } };
  }

  test('given versions cataloged under the current key and profile, then all are skipped with one point read each and nothing is published', async () => {
    const items = files(40);
    const { lookup } = indexOf(items);
    const published: PublishedEvent[] = [];
    const cp = await runBackfill({ lister: new ArrayLister(items), sink: { publish: async (e) => { published.push(...e); } }, checkpoints: new MemoryCheckpoints(), index: lookup, generation: k1 }, { batchSize: 7 });
    // Item 1 is under k2, which is not current here: it is the one re-indexed.
    expect(published.map((e) => e.data.url)).toEqual([items[1]!.url]);
    expect(cp.counts).toEqual({ listed: 40, emitted: 1, skipped: 39, reindexed: 1 });
  });

  test('given a key rotation, then every version cataloged under the old key is emitted with an id naming the new generation, failed ones and those under the new key skipped', async () => {
    const items = files(40);
    const { lookup } = indexOf(items);
    const published: PublishedEvent[] = [];
    const progress: BackfillProgress[] = [];
    const cp = await runBackfill({ lister: new ArrayLister(items), sink: { publish: async (e) => { published.push(...e); } }, checkpoints: new MemoryCheckpoints(), index: lookup, generation: k2, onProgress: (p) => progress.push(p) }, { batchSize: 7 });
    expect(published.map((e) => e.data.url).sort()).toEqual(items.slice(2).map((i) => i.url));
    expect(cp.counts).toEqual({ listed: 40, emitted: 38, skipped: 2, reindexed: 38 });
    expect(progress.at(-1)?.reindexed).toBe(38);
    // Not the id of the version's first ingestion, and the same in every run under this generation.
    expect(published[0]!.id).not.toBe(backfillEventId(items[2]!.url, items[2]!.etag));
    expect(published[0]!.id).toBe(backfillEventId(items[2]!.url, items[2]!.etag, k2));
  });

  test('given no generation (an older caller), then cataloged versions are skipped whatever made them', async () => {
    const items = files(10);
    const { lookup } = indexOf(items);
    const published: PublishedEvent[] = [];
    const cp = await runBackfill({ lister: new ArrayLister(items), sink: { publish: async (e) => { published.push(...e); } }, checkpoints: new MemoryCheckpoints(), index: lookup });
    expect(published).toHaveLength(0);
    expect(cp.counts).toEqual({ listed: 10, emitted: 0, skipped: 10 });
  });
});

test('given a checkpoint of a finished pass and then a key rotation, then the next run starts a new pass from the first page and re-indexes every file', async () => {
  const items = files(25);
  const topic = new IngestingTopic();
  const checkpoints = new MemoryCheckpoints();
  const k1 = { keyId: 'k1', profile: 'p', profileVersion: '1.0.0', profileDigest: 'd' };
  const lookup = { get: async (id: string) => { const d = topic.index.get(id); return d && { doc: { ...(d as { status: 'cataloged'; eTag: string }), deidentification: { ...k1, actions: {}, gate: 'passed' as const } } }; } };
  const first = await runBackfill({ lister: new ArrayLister(items), sink: topic, checkpoints, index: lookup, generation: k1 }, { pageSize: 10 });
  expect(first.counts).toEqual({ listed: 25, emitted: 25, skipped: 0 });
  // The same generation again: the finished checkpoint ends the run at once.
  expect((await runBackfill({ lister: new ArrayLister(items), sink: topic, checkpoints, index: lookup, generation: k1 }, { pageSize: 10 })).counts.emitted).toBe(25);
  expect(topic.published).toHaveLength(25);

  const again = await runBackfill({ lister: new ArrayLister(items), sink: topic, checkpoints, index: lookup, generation: { ...k1, keyId: 'k2' } }, { pageSize: 10 });
  expect(again.done).toBe(true);
  expect(again.counts).toEqual({ listed: 25, emitted: 25, skipped: 0, reindexed: 25 });
  expect(topic.published).toHaveLength(50);
});
