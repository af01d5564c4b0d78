/**
 * The notify-mode watcher end to end on real local services: the stand-ins over a temporary
 * replication target that keeps no snapshots (s3rver's live keys follow the folder; the REST
 * stand-in streams change notifications), the listing state as a blob in Azurite (conditional
 * writes), CloudEvents through the Event Grid SDK to a loopback topic, and each event ingested
 * by the use case reading the live file from s3rver (ANQ_READ_FROM=head); catalog in memory.
 *
 * The catalog must end as the folder says through files there before the watcher, a burst, a
 * file still being written, a modified, a deleted and a renamed file, a stream the cluster
 * drops because the watcher fell behind (recovered by the reconciliation), a crash between
 * publishing and writing the state, and duplicate deliveries.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { BlobServiceClient } from '@azure/storage-blob';

import { STAND_IN_S3_KEY } from '../../local/services/anqStandIn';
import { NotifySessionResult, NotifyWatcherDeps, runNotifySession } from '../../shared/anq/notifyWatcher';
import { QumuloNotifyClient } from '../../shared/anq/qumuloRest';
import type { ArchiveEventSink, ArchiveFileEvent } from '../../shared/anq/watcher';
import { BlobListingStateStore, EventGridArchiveSink, S3LiveTree } from '../../shared/anq/watcherAdapters';
import { defaultProfile } from '../../shared/dicom/deid/profile';
import { AnqScope, anqSourceUrl } from '../../shared/events/ingestEvents';
import { anqS3Client, AnqSourceStore } from '../../shared/storage/anqSourceStore';
import { SourceRouter } from '../../shared/storage/sourceRouter';
import { MemoryWorld, memoryWorld } from '../unit/fakes';
import { AnqTarget, dicomInstance, ingestEvents, LoopbackTopic, STAND_IN_BUCKET, STAND_IN_TOKEN, startAnqTarget, startLoopbackTopic, waitUntil } from './anqHarness';
import { testStack } from './stackEnv';

const FIXTURE = fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'dicom', 'pydicom-deb', 'test_files__MR_small.dcm'));
const scope: AnqScope = { cluster: 'anq-local', bucket: STAND_IN_BUCKET, exportPath: '/replica', prefix: 'dicom/', readFrom: 'head' };
const SETTLE_MS = 400;

let t: AnqTarget;
let topic: LoopbackTopic;

beforeAll(async () => {
  t = await startAnqTarget('anq-notify', { notify: { pollMs: 30, maxBufferedBytes: 64 * 1024 } });
  topic = await startLoopbackTopic();
});

afterAll(async () => {
  await t?.close();
  await topic?.close();
});

/** Dies after publishing when told to, before the state is written, like a host killed mid-session. */
class DyingSink implements ArchiveEventSink {
  dieAfterNextPublish = false;
  constructor(private readonly inner: ArchiveEventSink) {}
  async publish(events: ArchiveFileEvent[]): Promise<void> {
    await this.inner.publish(events);
    if (this.dieAfterNextPublish) {
      this.dieAfterNextPublish = false;
      throw new Error('the watcher process died after publishing, before writing its state');
    }
  }
}

interface Session {
  done: Promise<NotifySessionResult>;
  stop(): Promise<NotifySessionResult>;
}

function start(deps: NotifyWatcherDeps): Session {
  const ac = new AbortController();
  const done = runNotifySession(deps, { durationMs: 600_000, abortSignal: ac.signal });
  done.catch(() => undefined); // awaited by the test, possibly after it rejected
  return {
    done,
    async stop() {
      ac.abort();
      return done;
    },
  };
}

function depsFor(stateBlob: string, sink: ArchiveEventSink, extra: Partial<NotifyWatcherDeps> = {}): NotifyWatcherDeps {
  const s3 = anqS3Client({ endpoint: t.standIn.s3Endpoint, bucket: STAND_IN_BUCKET, region: 'us-east-1', ...STAND_IN_S3_KEY });
  const container = BlobServiceClient.fromConnectionString(testStack().env.SourceStorage!).getContainerClient('anq-watcher');
  return {
    notify: new QumuloNotifyClient(t.standIn.restEndpoint, STAND_IN_TOKEN),
    tree: new S3LiveTree(s3, STAND_IN_BUCKET),
    sink,
    state: new BlobListingStateStore(container, stateBlob),
    config: { cluster: scope.cluster, exportPath: scope.exportPath, prefix: scope.prefix, settleMs: SETTLE_MS, reconcileMs: 600_000, pageSize: 4 },
    log: { info: () => undefined, warn: () => undefined },
    ...extra,
  };
}

function worldReadingLive(): MemoryWorld {
  const world = memoryWorld(defaultProfile());
  const s3 = anqS3Client({ endpoint: t.standIn.s3Endpoint, bucket: STAND_IN_BUCKET, region: 'us-east-1', ...STAND_IN_S3_KEY });
  world.deps.source = new SourceRouter(world.source, new AnqSourceStore(s3));
  return world;
}

const url = (rel: string) => anqSourceUrl(scope.cluster, `/replica/${rel}`);
const paths = (events: Record<string, unknown>[]) => events.map((e) => `${e.type === 'VNA.Archive.FileDeleted' ? 'deleted' : 'replicated'} ${(e.data as { path: string }).path}`);

/** The catalog as `sourceUrl → status`, and the number of research instances. */
function catalogOf(world: MemoryWorld): { sources: Record<string, string>; instances: number } {
  const sources: Record<string, string> = {};
  for (const doc of world.index.all()) sources[doc.sourceUrl] = doc.status;
  return { sources, instances: world.catalog.instances.docs.size };
}

/** What the folder says: its DICOM files under the prefix cataloged, the ones gone deleted. */
function folderSays(gone: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const g of gone) out[url(g)] = 'deleted';
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(t.target, rel), { withFileTypes: true })) {
      const r = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(r);
      else out[url(r)] = 'cataloged';
    }
  };
  walk('dicom');
  return out;
}

test('given files before the watcher, a burst, a file still being written, then a modified, a deleted and a renamed file, and every event delivered twice, then each version is published once and the catalog ends as the folder says', async () => {
  const sink = new EventGridArchiveSink({ endpoint: topic.url, key: 'topic-key' });
  const first = topic.delivered.length;
  // There before the watcher: found by the reconciliation that follows the stream's registration.
  for (let i = 0; i < 3; i++) t.place(`dicom/before/${i}.dcm`, await dicomInstance(FIXTURE, 100 + i));
  t.place('other/not-the-archive.dcm', await dicomInstance(FIXTURE, 199));
  await t.standIn.settled();
  const session = start(depsFor(`notify-main-${Date.now()}.json`, sink));
  await waitUntil('the files already there are published', () => topic.delivered.length - first >= 3);

  // A burst of 10 files.
  for (let i = 0; i < 10; i++) t.place(`dicom/burst/${i}.dcm`, await dicomInstance(FIXTURE, 200 + i));
  // A file replication is still writing: 6 chunks, 100 ms apart (each gap shorter than the settle time).
  const slow = await dicomInstance(FIXTURE, 300);
  const fd = fs.openSync(path.join(t.target, 'dicom/slow.dcm'), 'w');
  const chunk = Math.ceil(slow.length / 6);
  for (let at = 0; at < slow.length; at += chunk) {
    fs.writeSync(fd, slow, at, Math.min(chunk, slow.length - at));
    fs.fsyncSync(fd);
    await new Promise((r) => setTimeout(r, 100));
  }
  fs.closeSync(fd);
  await waitUntil('the burst and the slow file are published', () => topic.delivered.length - first >= 14);
  await new Promise((r) => setTimeout(r, 3 * SETTLE_MS));
  const slowEvents = topic.delivered.slice(first).filter((e) => (e.data as { path: string }).path === '/replica/dicom/slow.dcm');
  expect(slowEvents).toHaveLength(1);
  expect((slowEvents[0]!.data as { size: number }).size).toBe(slow.length);

  const world = worldReadingLive();
  expect((await ingestEvents(world, topic.delivered.slice(first), scope)).every((s) => s === 'cataloged')).toBe(true);
  expect(catalogOf(world)).toEqual({ sources: folderSays([]), instances: 14 });

  // Modified (another instance in the same file), deleted, renamed.
  const mark = topic.delivered.length;
  t.place('dicom/burst/0.dcm', await dicomInstance(FIXTURE, 400));
  fs.rmSync(path.join(t.target, 'dicom/burst/1.dcm'));
  fs.renameSync(path.join(t.target, 'dicom/burst/2.dcm'), path.join(t.target, 'dicom/burst/2-renamed.dcm'));
  await waitUntil('the three changes are published', () => topic.delivered.length - mark >= 4);
  await new Promise((r) => setTimeout(r, 3 * SETTLE_MS));
  expect(paths(topic.delivered.slice(mark)).sort()).toEqual([
    'deleted /replica/dicom/burst/1.dcm',
    'deleted /replica/dicom/burst/2.dcm',
    'replicated /replica/dicom/burst/0.dcm',
    'replicated /replica/dicom/burst/2-renamed.dcm',
  ]);
  const r = await session.stop();
  expect(r).toMatchObject({ replicated: 16, deleted: 2, owner: true, streamsLost: 0 });
  // The 3 files that were there before came through the reconciliation; the rest through the stream.
  expect(r.reconciled).toBe(3);
  const ids = topic.delivered.slice(first).map((e) => e.id as string);
  expect(new Set(ids).size).toBe(ids.length);

  expect((await ingestEvents(world, topic.delivered.slice(mark), scope)).sort()).toEqual(['cataloged', 'cataloged', 'deleted', 'deleted']);
  const after = catalogOf(world);
  expect(after).toEqual({ sources: folderSays(['dicom/burst/1.dcm', 'dicom/burst/2.dcm']), instances: 13 });
  // Every event delivered again: nothing changes.
  expect((await ingestEvents(world, topic.delivered.slice(first), scope)).every((s) => s === 'unchanged')).toBe(true);
  expect(catalogOf(world)).toEqual(after);
}, 120_000);

test('given the watcher held back until the cluster drops its stream, and changes made while no stream is registered, then the reconciliation publishes them and the catalog ends as the folder says', async () => {
  fs.rmSync(path.join(t.target, 'dicom'), { recursive: true, force: true });
  await t.standIn.settled();
  const sink = new EventGridArchiveSink({ endpoint: topic.url, key: 'topic-key' });
  let hold: Promise<void> | undefined;
  let release = () => undefined as void;
  const deps = depsFor(`notify-drop-${Date.now()}.json`, sink, { beforeNotifications: () => hold ?? Promise.resolve() });
  const first = topic.delivered.length;
  t.place('dicom/kept.dcm', await dicomInstance(FIXTURE, 500));
  t.place('dicom/changed.dcm', await dicomInstance(FIXTURE, 501));
  t.place('dicom/removed.dcm', await dicomInstance(FIXTURE, 502));
  await t.standIn.settled();
  const session = start(deps);
  await waitUntil('the three files are published', () => topic.delivered.length - first >= 3);
  const world = worldReadingLive();
  await ingestEvents(world, topic.delivered.slice(first), scope);

  // The watcher stops taking notifications; a flood of long paths fills what the cluster queues for it.
  hold = new Promise<void>((r) => (release = r));
  const dropped = t.standIn.notifyStreams().dropped;
  const deep = Array.from({ length: 8 }, (_, i) => `${String(i)}${'d'.repeat(180)}`).join('/');
  for (let round = 0; round < 40 && t.standIn.notifyStreams().dropped === dropped; round++) {
    for (let i = 0; i < 100; i++) t.place(`dicom/flood/${deep}/${round}-${i}.tmp`, Buffer.from('x'));
    await t.standIn.settled();
  }
  expect(t.standIn.notifyStreams().dropped).toBe(dropped + 1);
  // The flood is gone again, and these changes happen with no stream registered: only a listing can find them.
  fs.rmSync(path.join(t.target, 'dicom/flood'), { recursive: true, force: true });
  t.place('dicom/changed.dcm', await dicomInstance(FIXTURE, 601));
  fs.rmSync(path.join(t.target, 'dicom/removed.dcm'));
  t.place('dicom/added.dcm', await dicomInstance(FIXTURE, 602));
  await t.standIn.settled();
  const mark = topic.delivered.length;
  hold = undefined;
  release();

  await waitUntil('the missed changes are published', () => topic.delivered.length - mark >= 3, 60_000);
  await new Promise((r) => setTimeout(r, 3 * SETTLE_MS));
  const r = await session.stop();
  expect(r.streamsLost).toBe(1);
  expect(paths(topic.delivered.slice(mark)).sort()).toEqual(['deleted /replica/dicom/removed.dcm', 'replicated /replica/dicom/added.dcm', 'replicated /replica/dicom/changed.dcm']);
  expect(r.reconciled).toBeGreaterThanOrEqual(6); // the 3 first files, then the 3 missed changes

  expect((await ingestEvents(world, topic.delivered.slice(mark), scope)).sort()).toEqual(['cataloged', 'cataloged', 'deleted']);
  expect(catalogOf(world)).toEqual({ sources: folderSays(['dicom/removed.dcm']), instances: 3 });
}, 180_000);

test('given a crash between publishing and writing the state, then the next session publishes the same events again (same ids) and nothing is missed', async () => {
  fs.rmSync(path.join(t.target, 'dicom'), { recursive: true, force: true });
  fs.mkdirSync(path.join(t.target, 'dicom')); // the watched directory must exist (a missing one is a 404, which stops the session)
  await t.standIn.settled();
  const dying = new DyingSink(new EventGridArchiveSink({ endpoint: topic.url, key: 'topic-key' }));
  const blob = `notify-crash-${Date.now()}.json`;
  const first = topic.delivered.length;
  const session = start(depsFor(blob, dying));
  await new Promise((r) => setTimeout(r, 2 * SETTLE_MS));
  dying.dieAfterNextPublish = true;
  t.place('dicom/crash/a.dcm', await dicomInstance(FIXTURE, 700));
  // The sink's plain Error comes out wrapped (INTERNAL), the cause kept.
  await expect(session.done).rejects.toMatchObject({ code: 'INTERNAL', cause: expect.objectContaining({ message: expect.stringMatching(/died after publishing/) }) });
  const published = topic.delivered.slice(first).map((e) => e.id as string);
  expect(published).toHaveLength(1);

  t.place('dicom/crash/b.dcm', await dicomInstance(FIXTURE, 701));
  await t.standIn.settled();
  const next = start(depsFor(blob, dying));
  await waitUntil('both files are published', () => topic.delivered.length - first >= 3);
  await new Promise((r) => setTimeout(r, 3 * SETTLE_MS));
  const r = await next.stop();
  // Both found by the listing (the stream told nothing).
  expect(r).toMatchObject({ replicated: 2, reconciled: 2, notifications: 0 });
  const ids = topic.delivered.slice(first).map((e) => e.id as string);
  expect(ids).toHaveLength(3);
  expect(ids.filter((id) => id === published[0])).toHaveLength(2);

  const world = worldReadingLive();
  // The first session's event, then the reconciliation's in key order: a again (a repeat changes nothing), b.
  expect(await ingestEvents(world, topic.delivered.slice(first), scope)).toEqual(['cataloged', 'unchanged', 'cataloged']);
  expect(catalogOf(world)).toEqual({ sources: folderSays([]), instances: 2 });
}, 120_000);
