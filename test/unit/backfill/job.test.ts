import type { BackfillPage, PublishedEvent, SourceLister } from '../../../shared/backfill/backfill';
import { type BackfillJobDocument, type BackfillJobStore, jobStatus, runBackfillSlice, type SliceDeps, startBackfillJob } from '../../../shared/backfill/job';
import { ErrorCodes, PipelineError } from '../../../shared/errors';

/** The blob's semantics: an ETag per write, If-Match / If-None-Match checked. */
class MemoryJobStore implements BackfillJobStore {
  doc?: BackfillJobDocument;
  etag?: string;
  private n = 0;
  /** Called before a write is checked: a test's chance to interleave another writer. */
  beforeWrite?: () => Promise<void>;

  async read() {
    return this.doc && this.etag ? { document: structuredClone(this.doc), etag: this.etag } : undefined;
  }

  async write(document: BackfillJobDocument, etag: string | undefined) {
    const hook = this.beforeWrite;
    this.beforeWrite = undefined;
    await hook?.();
    if (etag !== this.etag) throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'changed meanwhile');
    this.doc = structuredClone(document);
    this.etag = `e${++this.n}`;
    return this.etag;
  }
}

function lister(count: number): SourceLister {
  const items = Array.from({ length: count }, (_, i) => ({ url: `https://src.blob.core.windows.net/landing/f${String(i).padStart(4, '0')}.dcm`, etag: `0x${i}`, size: 10 }));
  return {
    name: 'blob:src.blob.core.windows.net/landing',
    async listPage(cursor, pageSize): Promise<BackfillPage> {
      const from = cursor ? Number(cursor) : 0;
      const to = Math.min(items.length, from + pageSize);
      return { items: items.slice(from, to), ...(to < items.length ? { next: String(to) } : {}) };
    },
  };
}

function setup(count: number) {
  const jobs = new MemoryJobStore();
  const published: PublishedEvent[] = [];
  const metrics: string[] = [];
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const deps: SliceDeps = {
    jobs,
    listerFor: async (source) => ({ lister: lister(count), source }),
    // Each publish takes 100 ms of the slice's time.
    sink: { publish: async (events) => { published.push(...events); clock += 100; } },
    index: { get: async () => undefined },
    telemetry: { trackMetric: (name) => metrics.push(name) },
    now: () => clock,
    sleep: async (ms) => { clock += ms; },
  };
  return { jobs, published, metrics, deps, tick: (ms: number) => (clock += ms) };
}

const SLICE = { maxRunMs: 250, pageSize: 10, batchSize: 5, concurrency: 1 };

describe('backfill job slices (the timer function)', () => {
  test('given no job, then a tick does nothing', async () => {
    const { deps, published } = setup(3);
    await expect(runBackfillSlice(deps, { owner: 't1', ...SLICE })).resolves.toEqual({ ran: false, reason: 'no job' });
    expect(published).toEqual([]);
  });

  test('given a job over 37 files and 250 ms slices, then it runs across several ticks from its checkpoint, every file emitted once, and completes', async () => {
    const { deps, jobs, published, metrics, tick } = setup(37);
    await startBackfillJob(jobs, { id: 'job-1', source: { kind: 'blob', container: 'landing' }, ratePerSecond: 0, requestedBy: 'op' }, deps.now);
    expect(jobStatus(jobs.doc as BackfillJobDocument)).toMatchObject({ state: 'pending', done: false, counts: { emitted: 0 } });

    const results = [];
    for (let t = 1; t <= 20 && jobs.doc?.state !== 'done'; t++) {
      results.push(await runBackfillSlice(deps, { owner: `tick-${t}`, ...SLICE }));
      tick(60_000);
    }
    // 37 files in batches of 5: 8 publishes; 3 per slice (the third crosses 250 ms).
    expect(results.length).toBe(3);
    expect(results.map((r) => r.ran && r.done)).toEqual([false, false, true]);
    const urls = published.map((e) => (e.data as { url: string }).url);
    expect(urls.length).toBe(37);
    expect(new Set(urls).size).toBe(37);
    const status = jobStatus(jobs.doc as BackfillJobDocument);
    expect(status).toMatchObject({ state: 'done', done: true, slices: 3, counts: { listed: 37, emitted: 37, skipped: 0 } });
    expect(status.completedAt).toBeDefined();
    expect(jobs.doc?.lease).toBeUndefined();
    expect(metrics).toEqual(expect.arrayContaining(['BackfillDone', 'BackfillRate']));
    // No blob name or URL in the status.
    expect(JSON.stringify(status)).not.toMatch(/\.dcm|blob\.core/);

    // Done: the next tick does nothing.
    await expect(runBackfillSlice(deps, { owner: 'late', ...SLICE })).resolves.toEqual({ ran: false, reason: 'done' });
    expect(published.length).toBe(37);
  });

  test('given two ticks that read the same document, then the one whose claim is second does nothing', async () => {
    const { deps, jobs, published } = setup(12);
    await startBackfillJob(jobs, { id: 'job-2', source: { kind: 'blob', container: 'landing' }, ratePerSecond: 0, requestedBy: 'op' }, deps.now);
    let second: Promise<unknown> | undefined;
    // The first tick's claim waits until the second tick has read the same ETag and claimed first.
    jobs.beforeWrite = async () => {
      second = runBackfillSlice(deps, { owner: 'b', ...SLICE, maxRunMs: 60_000 });
      await second;
    };
    const first = await runBackfillSlice(deps, { owner: 'a', ...SLICE, maxRunMs: 60_000 });
    expect(first).toEqual({ ran: false, reason: 'lost the claim' });
    await expect(second).resolves.toMatchObject({ ran: true, done: true });
    expect(published.length).toBe(12);
  });

  test('given a lease held by a running slice, then another tick does nothing until it expires', async () => {
    const { deps, jobs, published, tick } = setup(4);
    await startBackfillJob(jobs, { id: 'job-3', source: { kind: 'blob', container: 'landing' }, ratePerSecond: 0, requestedBy: 'op' }, deps.now);
    const doc = jobs.doc as BackfillJobDocument;
    jobs.doc = { ...doc, state: 'running', lease: { owner: 'crashed', until: new Date((deps.now as () => number)() + 1000).toISOString() } };
    await expect(runBackfillSlice(deps, { owner: 'x', ...SLICE })).resolves.toEqual({ ran: false, reason: 'leased' });
    expect(published).toEqual([]);
    tick(1001);
    await expect(runBackfillSlice(deps, { owner: 'x', ...SLICE })).resolves.toMatchObject({ ran: true, done: true });
    expect(published.length).toBe(4);
  });

  test('given a failing topic, then the slice records the error code and a later tick resumes from the checkpoint', async () => {
    const { deps, jobs, published, tick } = setup(10);
    await startBackfillJob(jobs, { id: 'job-4', source: { kind: 'blob', container: 'landing' }, ratePerSecond: 0, requestedBy: 'op' }, deps.now);
    const sink = deps.sink;
    let calls = 0;
    deps.sink = { publish: async (events) => { if (++calls === 2) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'topic down'); await sink.publish(events); } };
    await expect(runBackfillSlice(deps, { owner: 'a', ...SLICE, maxRunMs: 60_000 })).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
    expect(jobStatus(jobs.doc as BackfillJobDocument)).toMatchObject({ state: 'running', lastError: { code: ErrorCodes.SERVICE_UNAVAILABLE }, counts: { emitted: 5 } });
    expect(jobs.doc?.lease).toBeUndefined();
    tick(1000);
    await expect(runBackfillSlice(deps, { owner: 'b', ...SLICE, maxRunMs: 60_000 })).resolves.toMatchObject({ ran: true, done: true });
    expect(published.length).toBe(10);
    expect(new Set(published.map((e) => e.id)).size).toBe(10);
  });

  test('given a job still running, then another cannot be started; once done, it can', async () => {
    const { deps, jobs } = setup(2);
    await startBackfillJob(jobs, { id: 'job-5', source: { kind: 'blob', container: 'landing' }, ratePerSecond: 0, requestedBy: 'op' }, deps.now);
    await expect(startBackfillJob(jobs, { id: 'job-6', source: { kind: 'blob', container: 'landing' }, ratePerSecond: 0, requestedBy: 'op' })).rejects.toMatchObject({ code: ErrorCodes.STATE_CONFLICT });
    await runBackfillSlice(deps, { owner: 'a', ...SLICE });
    await expect(startBackfillJob(jobs, { id: 'job-6', source: { kind: 'blob', container: 'landing' }, ratePerSecond: 0, requestedBy: 'op' })).resolves.toMatchObject({ id: 'job-6', state: 'pending' });
  });
});
