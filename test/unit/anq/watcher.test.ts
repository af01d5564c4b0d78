/**
 * The snapshot-diff watcher's core on in-memory fakes of its interfaces: a cluster that keeps
 * snapshots and answers tree diffs page by page (the shapes of the Qumulo REST API Guide,
 * snapshots/v2_snapshots_newer_id_changes-since_older_id.html), an event sink, and a
 * checkpoint store with conditional writes that can "crash" the run between publishing a
 * page and checkpointing it.
 */
import type { QumuloApi, QumuloFileAttributes, QumuloSnapshot, TreeDiffEntry, TreeDiffPage } from '../../../shared/anq/qumuloRest';
import { archiveEventId, ArchiveEventSink, ArchiveFileEvent, CheckpointStore, SnapshotFileLister, WatcherCheckpoint, WatcherConfig, WatcherDeps, watchSnapshots } from '../../../shared/anq/watcher';
import { ErrorCodes, PipelineError } from '../../../shared/errors';
import { FILE_DELETED, FILE_REPLICATED } from '../../../shared/events/ingestEvents';

type FileState = { size: number; mtime: string };

class FakeCluster implements QumuloApi {
  readonly snapshots: { info: QumuloSnapshot; files: Map<string, FileState> }[] = [];
  live = new Map<string, FileState>();
  diffCalls = 0;
  attributeCalls = 0;
  private clock = 0;

  write(path: string, size: number): void {
    this.live.set(path, { size, mtime: new Date(Date.UTC(2026, 0, 1) + ++this.clock * 1000).toISOString() });
  }

  remove(path: string): void {
    this.live.delete(path);
  }

  snapshot(sourceFileId = '2'): QumuloSnapshot {
    const id = (this.snapshots.at(-1)?.info.id ?? 0) + 1;
    const info: QumuloSnapshot = { id, name: `${id}_replication`, timestamp: new Date(Date.UTC(2026, 0, 2) + id * 60_000).toISOString(), source_file_id: sourceFileId, policy_id: 1, expiration: null, in_delete: false };
    this.snapshots.push({ info, files: new Map(this.live) });
    return info;
  }

  expire(id: number): void {
    const i = this.snapshots.findIndex((s) => s.info.id === id);
    this.snapshots.splice(i, 1);
  }

  async listSnapshots(): Promise<QumuloSnapshot[]> {
    return this.snapshots.map((s) => ({ ...s.info }));
  }

  /** Files as CREATE/MODIFY/DELETE, plus the parent directory of each as MODIFY (`/` at the end), sorted by path. */
  static diff(older: Map<string, FileState>, newer: Map<string, FileState>): TreeDiffEntry[] {
    const out: TreeDiffEntry[] = [];
    const dirs = new Set<string>();
    for (const [p, f] of newer) {
      const before = older.get(p);
      if (!before) out.push({ op: 'CREATE', path: p });
      else if (before.size !== f.size || before.mtime !== f.mtime) out.push({ op: 'MODIFY', path: p });
      else continue;
      dirs.add(p.slice(0, p.lastIndexOf('/') + 1));
    }
    for (const p of older.keys()) {
      if (!newer.has(p)) {
        out.push({ op: 'DELETE', path: p });
        dirs.add(p.slice(0, p.lastIndexOf('/') + 1));
      }
    }
    for (const d of dirs) out.push({ op: 'MODIFY', path: d });
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  async changesSince(newerId: number, olderId: number, after: string | undefined, options: { limit?: number } = {}): Promise<TreeDiffPage> {
    this.diffCalls++;
    const newer = this.snapshots.find((s) => s.info.id === newerId);
    const older = this.snapshots.find((s) => s.info.id === olderId);
    if (!newer || !older) throw new PipelineError(ErrorCodes.NOT_FOUND, 'no such snapshot');
    const all = FakeCluster.diff(older.files, newer.files);
    const start = after === undefined ? 0 : Number(after);
    const limit = options.limit ?? 1000;
    const entries = all.slice(start, start + limit);
    return { entries, after: start + limit < all.length ? String(start + limit) : undefined };
  }

  async attributes(path: string, snapshotId?: number): Promise<QumuloFileAttributes | undefined> {
    this.attributeCalls++;
    const files = snapshotId === undefined ? this.live : this.snapshots.find((s) => s.info.id === snapshotId)?.files;
    const f = files?.get(path);
    if (!f) return undefined;
    return { path, name: path.split('/').at(-1) ?? '', type: 'FS_FILE_TYPE_FILE', id: '9', file_number: '9', size: String(f.size), modification_time: f.mtime, change_time: f.mtime, creation_time: f.mtime };
  }
}

class RecordingSink implements ArchiveEventSink {
  readonly events: ArchiveFileEvent[] = [];
  calls = 0;
  failNext?: PipelineError;

  async publish(events: ArchiveFileEvent[]): Promise<void> {
    this.calls++;
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = undefined;
      throw e;
    }
    this.events.push(...events);
  }
}

/** A process that dies on its Nth checkpoint write, after publishing, before the write lands. */
class Crash extends Error {}

class MemoryCheckpoints implements CheckpointStore {
  doc?: { checkpoint: WatcherCheckpoint; etag: string };
  writes = 0;
  private version = 0;
  /** Checkpoint writes (counted from 1) at which the process "dies" instead. */
  crashAt = new Set<number>();

  async read(): Promise<{ checkpoint: WatcherCheckpoint; etag: string } | undefined> {
    return this.doc && { checkpoint: JSON.parse(JSON.stringify(this.doc.checkpoint)) as WatcherCheckpoint, etag: this.doc.etag };
  }

  async write(checkpoint: WatcherCheckpoint, expectedEtag: string | undefined): Promise<string> {
    this.writes++;
    if (this.crashAt.has(this.writes)) throw new Crash(`crashed before checkpoint write ${this.writes}`);
    if ((this.doc?.etag ?? undefined) !== expectedEtag) throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'moved');
    const etag = `v${++this.version}`;
    this.doc = { checkpoint: JSON.parse(JSON.stringify(checkpoint)) as WatcherCheckpoint, etag };
    return etag;
  }
}

const quiet = { info: () => undefined, warn: () => undefined };
const config: WatcherConfig = { cluster: 'anq-west', exportPath: '/replica', prefix: 'dicom/', snapshotSourceIds: ['2'], startFrom: 'oldest', pageSize: 1000 };

function depsOf(cluster: FakeCluster, sink: RecordingSink, checkpoints: MemoryCheckpoints, overrides: Partial<WatcherConfig> = {}, now?: () => number): WatcherDeps {
  return { api: cluster, sink, checkpoints, config: { ...config, ...overrides }, log: quiet, now };
}

/** Runs the watcher until it reaches the newest snapshot, starting a "new process" after each crash. */
async function runToEnd(deps: WatcherDeps): Promise<{ crashes: number; runs: number }> {
  let crashes = 0;
  let runs = 0;
  for (;;) {
    runs++;
    try {
      const r = await watchSnapshots(deps);
      if (!r.stoppedEarly) return { crashes, runs };
    } catch (e) {
      if (!(e instanceof Crash)) throw e;
      crashes++;
    }
  }
}

/** What exactly-once publishing of every change between consecutive snapshots would give: `snapshot op path`. */
function expectedChanges(cluster: FakeCluster, fromIndex = 0): string[] {
  const out: string[] = [];
  for (let i = fromIndex + 1; i < cluster.snapshots.length; i++) {
    const older = cluster.snapshots[i - 1]!;
    const newer = cluster.snapshots[i]!;
    for (const e of FakeCluster.diff(older.files, newer.files)) {
      if (e.path.endsWith('/') || !e.path.startsWith('/replica/dicom/')) continue;
      out.push(`${newer.info.id} ${e.op === 'DELETE' ? FILE_DELETED : FILE_REPLICATED} ${e.path}`);
    }
  }
  return out.sort();
}

const described = (events: ArchiveFileEvent[]) => events.map((e) => `${e.data.snapshotId} ${e.type} ${e.data.path}`).sort();

describe('watchSnapshots', () => {
  test('given files created across two snapshots, then one FileReplicated each with path, size, mtime and snapshot; directories and files outside the prefix publish nothing', async () => {
    const cluster = new FakeCluster();
    cluster.snapshot(); // the baseline, empty
    cluster.write('/replica/dicom/s1/a.dcm', 100);
    cluster.write('/replica/dicom/s1/b.dcm', 200);
    cluster.write('/replica/other/x.dcm', 5);
    const s2 = cluster.snapshot();
    cluster.write('/replica/dicom/s2/c.dcm', 300);
    const s3 = cluster.snapshot();
    const sink = new RecordingSink();
    const checkpoints = new MemoryCheckpoints();

    const r = await watchSnapshots(depsOf(cluster, sink, checkpoints));

    expect(r).toMatchObject({ snapshotsDiffed: 2, replicated: 3, deleted: 0, lastSnapshotId: s3.id, stoppedEarly: false });
    expect(sink.events.map((e) => [e.type, e.data.path, e.data.size, e.data.snapshotId])).toEqual([
      [FILE_REPLICATED, '/replica/dicom/s1/a.dcm', 100, s2.id],
      [FILE_REPLICATED, '/replica/dicom/s1/b.dcm', 200, s2.id],
      [FILE_REPLICATED, '/replica/dicom/s2/c.dcm', 300, s3.id],
    ]);
    const first = sink.events[0]!;
    expect(first).toEqual({
      id: archiveEventId('anq-west', s2.id, 'CREATE', '/replica/dicom/s1/a.dcm'),
      type: FILE_REPLICATED,
      source: 'anq://anq-west',
      subject: '/replica/dicom/s1/a.dcm',
      time: s2.timestamp,
      data: { url: 'anq://anq-west/replica/dicom/s1/a.dcm', path: '/replica/dicom/s1/a.dcm', size: 100, mtime: cluster.snapshots[1]!.files.get('/replica/dicom/s1/a.dcm')!.mtime, snapshotId: s2.id, snapshotName: s2.name },
    });
    expect(checkpoints.doc?.checkpoint).toEqual({ version: 1, lastSnapshotId: s3.id });

    // Nothing new: nothing published, nothing diffed.
    const calls = cluster.diffCalls;
    expect(await watchSnapshots(depsOf(cluster, sink, checkpoints))).toMatchObject({ snapshotsDiffed: 0, replicated: 0 });
    expect(sink.events).toHaveLength(3);
    expect(cluster.diffCalls).toBe(calls);
  });

  test('given a modified, a deleted and a renamed file, then FileReplicated for the new versions and names, FileDeleted (with the last size) for the old', async () => {
    const cluster = new FakeCluster();
    cluster.write('/replica/dicom/keep.dcm', 1);
    cluster.write('/replica/dicom/mod.dcm', 10);
    cluster.write('/replica/dicom/del.dcm', 20);
    cluster.write('/replica/dicom/old-name.dcm', 30);
    cluster.snapshot();
    const sink = new RecordingSink();
    const checkpoints = new MemoryCheckpoints();
    await watchSnapshots(depsOf(cluster, sink, checkpoints));
    expect(sink.events).toHaveLength(0);

    cluster.write('/replica/dicom/mod.dcm', 11);
    cluster.remove('/replica/dicom/del.dcm');
    const renamed = cluster.live.get('/replica/dicom/old-name.dcm')!;
    cluster.remove('/replica/dicom/old-name.dcm');
    cluster.live.set('/replica/dicom/new-name.dcm', renamed);
    const s2 = cluster.snapshot();
    await watchSnapshots(depsOf(cluster, sink, checkpoints));

    expect(sink.events.map((e) => [e.type, e.data.path, e.data.size, e.data.snapshotId])).toEqual([
      [FILE_DELETED, '/replica/dicom/del.dcm', 20, s2.id],
      [FILE_REPLICATED, '/replica/dicom/mod.dcm', 11, s2.id],
      [FILE_REPLICATED, '/replica/dicom/new-name.dcm', 30, s2.id],
      [FILE_DELETED, '/replica/dicom/old-name.dcm', 30, s2.id],
    ]);
  });

  test('given a crash between publishing a page and checkpointing it, then the next run publishes that page again (same ids) and nothing is missed', async () => {
    const cluster = new FakeCluster();
    cluster.snapshot();
    for (let i = 0; i < 10; i++) cluster.write(`/replica/dicom/f${i}.dcm`, i + 1);
    cluster.snapshot();
    const sink = new RecordingSink();
    const checkpoints = new MemoryCheckpoints();
    // Writes: 1 = first checkpoint (baseline), 2 = after page 1, 3 = after page 2 (crash), ...
    checkpoints.crashAt.add(3);
    const deps = depsOf(cluster, sink, checkpoints, { pageSize: 4 });

    const { crashes } = await runToEnd(deps);

    expect(crashes).toBe(1);
    const ids = sink.events.map((e) => e.id);
    const unique = new Set(ids);
    expect(described(sink.events.filter((e, i) => ids.indexOf(e.id) === i))).toEqual(expectedChanges(cluster));
    // Page 1 holds the directory's MODIFY and f0-f2, page 2 f3-f6: page 2 was published before the
    // crash and again after it, nothing else was.
    expect(ids.length - unique.size).toBe(4);
    const repeated = ids.filter((id, i) => ids.indexOf(id) !== i);
    expect(repeated).toEqual(sink.events.slice(3, 7).map((e) => e.id));
    expect(sink.events.slice(3, 7).map((e) => e.data.path)).toEqual([3, 4, 5, 6].map((i) => `/replica/dicom/f${i}.dcm`));
    expect(checkpoints.doc?.checkpoint).toEqual({ version: 1, lastSnapshotId: 2 });
  });

  test('given a publish that fails, then the run throws and the checkpoint stays before that page', async () => {
    const cluster = new FakeCluster();
    cluster.snapshot();
    cluster.write('/replica/dicom/a.dcm', 1);
    cluster.snapshot();
    const sink = new RecordingSink();
    const checkpoints = new MemoryCheckpoints();
    sink.failNext = new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'topic down');
    await expect(watchSnapshots(depsOf(cluster, sink, checkpoints))).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
    expect(checkpoints.doc?.checkpoint).toEqual({ version: 1, lastSnapshotId: 1 });
    await watchSnapshots(depsOf(cluster, sink, checkpoints));
    expect(described(sink.events)).toEqual(['2 VNA.Archive.FileReplicated /replica/dicom/a.dcm']);
  });

  test('given a run out of time within a diff, then it stops at a page boundary and the next run goes on from there', async () => {
    const cluster = new FakeCluster();
    cluster.snapshot();
    for (let i = 0; i < 9; i++) cluster.write(`/replica/dicom/f${i}.dcm`, 1);
    cluster.snapshot();
    const sink = new RecordingSink();
    const checkpoints = new MemoryCheckpoints();
    let clock = 0;
    const tick = () => (clock += 40);
    const r1 = await watchSnapshots(depsOf(cluster, sink, checkpoints, { pageSize: 3, maxRunMs: 100 }, tick));
    expect(r1.stoppedEarly).toBe(true);
    expect(checkpoints.doc?.checkpoint.inProgress).toMatchObject({ olderId: 1, newerId: 2 });
    await runToEnd(depsOf(cluster, sink, checkpoints, { pageSize: 3, maxRunMs: 100 }, tick));
    expect(described(sink.events)).toEqual(expectedChanges(cluster));
    expect(new Set(sink.events.map((e) => e.id)).size).toBe(sink.events.length);
  });

  test('given another run that moved the checkpoint, then this run stops without publishing further', async () => {
    const cluster = new FakeCluster();
    cluster.snapshot();
    for (let i = 0; i < 6; i++) cluster.write(`/replica/dicom/f${i}.dcm`, 1);
    cluster.snapshot();
    const sink = new RecordingSink();
    const checkpoints = new MemoryCheckpoints();
    const deps = depsOf(cluster, sink, checkpoints, { pageSize: 2 });
    await watchSnapshots({ ...deps, config: { ...deps.config, startFrom: 'latest' } });
    // A concurrent run: it read the same checkpoint; another writer moves it before its first page lands.
    const original = checkpoints.write.bind(checkpoints);
    let first = true;
    checkpoints.write = async (cp, etag) => {
      if (first) {
        first = false;
        await original({ version: 1, lastSnapshotId: 1 }, checkpoints.doc?.etag);
      }
      return original(cp, etag);
    };
    checkpoints.doc = { checkpoint: { version: 1, lastSnapshotId: 1 }, etag: checkpoints.doc!.etag };
    const r = await watchSnapshots(deps);
    // The first page (the directory's MODIFY and f0) was published; its checkpoint was refused, and the run stopped.
    expect(r.pages).toBe(1);
    expect(sink.events.map((e) => e.data.path)).toEqual(['/replica/dicom/f0.dcm']);
  });

  test('given the last diffed snapshot expired, then the newest older one stands in: every change is published, some again, none skipped', async () => {
    const cluster = new FakeCluster();
    cluster.snapshot();
    cluster.write('/replica/dicom/a.dcm', 1);
    cluster.snapshot();
    const sink = new RecordingSink();
    const checkpoints = new MemoryCheckpoints();
    await watchSnapshots(depsOf(cluster, sink, checkpoints));
    cluster.write('/replica/dicom/b.dcm', 2);
    cluster.snapshot();
    cluster.expire(2);
    await watchSnapshots(depsOf(cluster, sink, checkpoints));
    expect(described(sink.events)).toEqual(['2 VNA.Archive.FileReplicated /replica/dicom/a.dcm', '3 VNA.Archive.FileReplicated /replica/dicom/a.dcm', '3 VNA.Archive.FileReplicated /replica/dicom/b.dcm']);
    expect(checkpoints.doc?.checkpoint).toEqual({ version: 1, lastSnapshotId: 3 });
  });

  test('given snapshots of another directory, or a first run that starts at the newest, then those are not diffed', async () => {
    const cluster = new FakeCluster();
    cluster.snapshot();
    cluster.write('/replica/dicom/a.dcm', 1);
    cluster.snapshot('77');
    cluster.write('/replica/dicom/b.dcm', 1);
    cluster.snapshot();
    const sink = new RecordingSink();
    await watchSnapshots(depsOf(cluster, sink, new MemoryCheckpoints()));
    expect(described(sink.events)).toEqual(['3 VNA.Archive.FileReplicated /replica/dicom/a.dcm', '3 VNA.Archive.FileReplicated /replica/dicom/b.dcm']);
    const late = new RecordingSink();
    await watchSnapshots(depsOf(cluster, late, new MemoryCheckpoints(), { startFrom: 'latest' }));
    expect(late.events).toHaveLength(0);
  });

  test('given 10,000 files across 10 snapshots (creates, modifies, deletes, renames), then every change is published once; with two crashes, repeats only of the crashed pages', async () => {
    const build = () => {
      const cluster = new FakeCluster();
      cluster.snapshot();
      let n = 0;
      for (let s = 1; s <= 10; s++) {
        for (let i = 0; i < 1000; i++) cluster.write(`/replica/dicom/study${s}/series${i % 10}/${n++}.dcm`, 1000 + i);
        if (s > 1) {
          for (let i = 0; i < 50; i++) cluster.write(`/replica/dicom/study${s - 1}/series1/${(s - 2) * 1000 + i * 10 + 1}.dcm`, 7);
          for (let i = 0; i < 30; i++) cluster.remove(`/replica/dicom/study${s - 1}/series2/${(s - 2) * 1000 + i * 10 + 2}.dcm`);
          for (let i = 0; i < 20; i++) {
            const from = `/replica/dicom/study${s - 1}/series3/${(s - 2) * 1000 + i * 10 + 3}.dcm`;
            const f = cluster.live.get(from)!;
            cluster.remove(from);
            cluster.live.set(`${from}.renamed`, f);
          }
        }
        cluster.snapshot();
      }
      return cluster;
    };

    const cluster = build();
    const expected = expectedChanges(cluster);
    const sink = new RecordingSink();
    const checkpoints = new MemoryCheckpoints();
    const t0 = performance.now();
    const { crashes } = await runToEnd(depsOf(cluster, sink, checkpoints, { pageSize: 1000 }));
    const ms = performance.now() - t0;
    expect(crashes).toBe(0);
    expect(described(sink.events)).toEqual(expected);
    expect(new Set(sink.events.map((e) => e.id)).size).toBe(sink.events.length);
    expect(sink.events.filter((e) => e.type === FILE_REPLICATED)).toHaveLength(10_000 + 9 * (50 + 20));
    expect(sink.events.filter((e) => e.type === FILE_DELETED)).toHaveLength(9 * (30 + 20));

    // The same history with the process dying twice between a publish and its checkpoint.
    const crashed = build();
    const sink2 = new RecordingSink();
    const checkpoints2 = new MemoryCheckpoints();
    checkpoints2.crashAt = new Set([4, 9]);
    const t1 = performance.now();
    const run2 = await runToEnd(depsOf(crashed, sink2, checkpoints2, { pageSize: 1000 }));
    const ms2 = performance.now() - t1;
    expect(run2.crashes).toBe(2);
    const ids = sink2.events.map((e) => e.id);
    const firsts = sink2.events.filter((e, i) => ids.indexOf(e.id) === i);
    expect(described(firsts)).toEqual(expected);
    const repeats = ids.length - new Set(ids).size;
    // Each crash repeats exactly the one page it had published (at most pageSize events).
    expect(repeats).toBeGreaterThan(0);
    expect(repeats).toBeLessThanOrEqual(2 * 1000);
    console.log(
      `ANQ watcher, 10,000 files across 10 snapshots: ${sink.events.length} events (${expected.length} changes) in ${ms.toFixed(0)} ms, ` +
        `${cluster.diffCalls} diff pages, ${cluster.attributeCalls} attribute reads, 0 missed, 0 repeated; ` +
        `with 2 crashes: ${sink2.events.length} events in ${ms2.toFixed(0)} ms, 0 missed, ${repeats} repeated (the crashed pages)`,
    );
  });
});

/** The fake cluster's snapshots listed as the S3 API lists a `.snapshot` directory: keys relative to the export, in key order, paged by StartAfter. */
class FakeLister implements SnapshotFileLister {
  calls = 0;
  constructor(private readonly cluster: FakeCluster) {}

  async listFiles(snapshot: { id: number }, prefix: string, after: string | undefined, options: { limit: number }) {
    this.calls++;
    const files = this.cluster.snapshots.find((s) => s.info.id === snapshot.id)?.files ?? new Map<string, FileState>();
    const keys = [...files.keys()].map((p) => p.slice('/replica/'.length)).filter((k) => k.startsWith(prefix) && (after === undefined || k > after)).sort();
    const page = keys.slice(0, options.limit);
    return {
      files: page.map((key) => ({ key, size: files.get(`/replica/${key}`)!.size, lastModified: new Date(files.get(`/replica/${key}`)!.mtime) })),
      lastKey: page.at(-1),
      done: page.length === keys.length,
    };
  }
}

describe('backfill of the files already there when the watcher starts', () => {
  function archiveBefore(cluster: FakeCluster, n: number): string[] {
    const paths = Array.from({ length: n }, (_, i) => `/replica/dicom/old/${String(i).padStart(3, '0')}.dcm`);
    for (const p of paths) cluster.write(p, 100);
    cluster.write('/replica/other/not-ours.dcm', 1);
    return paths;
  }

  test('given files in the snapshot the watcher starts from, then each is published once as replicated, before the changes after it', async () => {
    const cluster = new FakeCluster();
    const old = archiveBefore(cluster, 7);
    const base = cluster.snapshot();
    cluster.write('/replica/dicom/new.dcm', 5);
    cluster.snapshot();
    const sink = new RecordingSink();
    const deps = { ...depsOf(cluster, sink, new MemoryCheckpoints(), { backfill: true, pageSize: 3 }), files: new FakeLister(cluster) };
    const r = await watchSnapshots(deps);
    expect(r).toMatchObject({ backfilled: 7, replicated: 8, snapshotsDiffed: 1 });
    expect(sink.events.map((e) => e.data.path)).toEqual([...old, '/replica/dicom/new.dcm']);
    expect(sink.events.slice(0, 7).every((e) => e.type === FILE_REPLICATED && e.data.snapshotId === base.id && e.data.size === 100 && e.data.mtime !== null)).toBe(true);
    // Nothing more on the next run.
    await watchSnapshots(deps);
    expect(sink.events).toHaveLength(8);
  });

  test('given a crash after each checkpointed page of the backfill, then the next run resumes after the last page checkpointed: every file published, none skipped, only one page repeated per crash', async () => {
    const cluster = new FakeCluster();
    const old = archiveBefore(cluster, 10);
    cluster.snapshot();
    const sink = new RecordingSink();
    const checkpoints = new MemoryCheckpoints();
    // Write 1 records the start; writes 3 and 5 (after pages 2 and 4 were published) die.
    checkpoints.crashAt = new Set([3, 5]);
    const lister = new FakeLister(cluster);
    const { crashes } = await runToEnd({ ...depsOf(cluster, sink, checkpoints, { backfill: true, pageSize: 3 }), files: lister });
    expect(crashes).toBe(2);
    const paths = sink.events.map((e) => e.data.path);
    expect(new Set(paths)).toEqual(new Set(old));
    // Each crash repeats the one page it had published (3 files), never the whole backfill.
    expect(paths.length).toBe(old.length + 2 * 3);
    // 4 pages, 2 of them listed twice.
    expect(lister.calls).toBe(6);
    expect(checkpoints.doc?.checkpoint).toEqual({ version: 1, lastSnapshotId: 1 });
  });

  test('given the snapshot being backfilled expires mid-backfill, then the next kept one is backfilled from the start and the diffs go on from it', async () => {
    const cluster = new FakeCluster();
    const old = archiveBefore(cluster, 4);
    cluster.snapshot();
    const sink = new RecordingSink();
    const checkpoints = new MemoryCheckpoints();
    checkpoints.crashAt = new Set([3]);
    const deps = { ...depsOf(cluster, sink, checkpoints, { backfill: true, pageSize: 2 }), files: new FakeLister(cluster) };
    await expect(watchSnapshots(deps)).rejects.toBeInstanceOf(Crash);
    cluster.remove(old[0]!);
    cluster.write('/replica/dicom/later.dcm', 9);
    const second = cluster.snapshot();
    cluster.expire(1);
    await watchSnapshots(deps);
    const afterExpiry = sink.events.slice(4).map((e) => `${e.data.snapshotId} ${e.data.path}`);
    expect(afterExpiry).toEqual(['/replica/dicom/later.dcm', ...old.slice(1)].sort().map((p) => `${second.id} ${p}`));
    expect(checkpoints.doc?.checkpoint).toEqual({ version: 1, lastSnapshotId: second.id });
  });

  test('given backfill on without a lister, then the run fails CONFIG_INVALID', async () => {
    const cluster = new FakeCluster();
    cluster.snapshot();
    await expect(watchSnapshots(depsOf(cluster, new RecordingSink(), new MemoryCheckpoints(), { backfill: true }))).rejects.toMatchObject({ code: ErrorCodes.CONFIG_INVALID });
  });
});
