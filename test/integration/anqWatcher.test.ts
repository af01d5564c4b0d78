/**
 * The ANQ path end to end on real local services: the Qumulo REST stand-in and s3rver over a
 * temporary replication target (local/services/anqStandIn.ts), the watcher's checkpoint as a
 * blob in Azurite (conditional writes), its CloudEvents sent through the Event Grid SDK to a
 * loopback topic, and each event delivered to the ingestion use case (ingestSourceFile) with
 * the ANQ source store reading the files from s3rver; the catalog is in memory.
 *
 * The catalog must end exactly as the latest snapshot says, through a burst of files across two
 * snapshots, a modified, a deleted and a renamed file, a watcher crash between publishing and
 * checkpointing, and duplicate deliveries.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { BlobServiceClient, ContainerClient } from '@azure/storage-blob';

import { placeAndSnapshot } from '../../local/anqIngest';
import { STAND_IN_S3_KEY } from '../../local/services/anqStandIn';
import { QumuloRestClient } from '../../shared/anq/qumuloRest';
import { ArchiveEventSink, ArchiveFileEvent, WatcherDeps, watchSnapshots } from '../../shared/anq/watcher';
import { BlobCheckpointStore, EventGridArchiveSink } from '../../shared/anq/watcherAdapters';
import { asciiValue } from '../../shared/dicom/dataset';
import { defaultProfile } from '../../shared/dicom/deid/profile';
import { parseDicomBuffer } from '../../shared/dicom/parser';
import { Tags } from '../../shared/dicom/tags';
import { ErrorCodes } from '../../shared/errors';
import { AnqScope, anqSourceUrl } from '../../shared/events/ingestEvents';
import { anqS3Client, AnqSourceStore, RestSnapshotResolver } from '../../shared/storage/anqSourceStore';
import { AnqQuarantineStore, QuarantineRouter, SourceRouter } from '../../shared/storage/sourceRouter';
import { MemoryWorld, memoryWorld } from '../unit/fakes';
import { AnqTarget, ingestEvents, LoopbackTopic, STAND_IN_BUCKET as BUCKET, STAND_IN_TOKEN as TOKEN, startAnqTarget, startLoopbackTopic } from './anqHarness';
import { hostLog, testStack } from './stackEnv';

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'dicom', 'pydicom-deb', 'test_files__MR_small.dcm');
const scope: AnqScope = { cluster: 'anq-local', bucket: BUCKET, exportPath: '/replica', prefix: 'dicom/', readFrom: 'snapshot' };

let t: AnqTarget;
let topic: LoopbackTopic;

beforeAll(async () => {
  t = await startAnqTarget('anq-watcher');
  topic = await startLoopbackTopic();
});

afterAll(async () => {
  await t?.close();
  await topic?.close();
});

const base = fs.readFileSync(FIXTURE);

/** The fixture with its SOP instance UID (and series) changed in place: one distinct instance per `i`. */
async function variantOf(i: number, series = 'A'): Promise<Buffer> {
  const p = await parseDicomBuffer(base);
  const out = Buffer.from(base);
  const replace = (uid: string, next: string) => {
    let at = out.indexOf(Buffer.from(uid, 'latin1'), 132);
    while (at > 0) {
      out.write(next, at, 'latin1');
      at = out.indexOf(Buffer.from(uid, 'latin1'), at + 1);
    }
  };
  const sop = asciiValue(p.dataset.get(Tags.SOPInstanceUID))!;
  const seriesUid = asciiValue(p.dataset.get(Tags.SeriesInstanceUID))!;
  replace(sop, `${sop.slice(0, sop.length - 4)}${String(i).padStart(4, '0')}`);
  replace(seriesUid, `${seriesUid.slice(0, seriesUid.length - 1)}${series === 'A' ? '1' : '2'}`);
  return out;
}

/** A sink that "crashes the process" after publishing when told to, like a host killed mid-run. */
class CrashingSink implements ArchiveEventSink {
  crashAfterNextPublish = false;
  constructor(private readonly inner: ArchiveEventSink) {}
  async publish(events: ArchiveFileEvent[]): Promise<void> {
    await this.inner.publish(events);
    if (this.crashAfterNextPublish) {
      this.crashAfterNextPublish = false;
      throw new Error('the watcher process died after publishing, before checkpointing');
    }
  }
}

interface Harness {
  world: MemoryWorld;
  quarantine: ContainerClient;
  deps: WatcherDeps;
  sink: CrashingSink;
  /** Delivers every CloudEvent the topic got and was not delivered yet (or all again), in order. */
  deliver(options?: { again?: boolean }): Promise<string[]>;
}

async function harness(checkpointBlob: string): Promise<Harness> {
  const s3 = anqS3Client({ endpoint: t.standIn.s3Endpoint, bucket: BUCKET, region: 'us-east-1', ...STAND_IN_S3_KEY });
  const rest = new QumuloRestClient(t.standIn.restEndpoint, TOKEN);
  const blobService = BlobServiceClient.fromConnectionString(testStack().env.SourceStorage!);
  const container = blobService.getContainerClient('anq-watcher');
  const quarantineContainer = blobService.getContainerClient('anq-test-quarantine');
  await quarantineContainer.createIfNotExists();
  const world = memoryWorld(defaultProfile());
  const anqStore = new AnqSourceStore(s3, new RestSnapshotResolver((o) => rest.listSnapshots(o), (s) => s.source_file_id === t.standIn.exportFileId, 0));
  // As the runtime serves both sources: anq/<bucket> locations go to the cluster, others to the landing containers.
  world.deps.source = new SourceRouter(world.source, anqStore);
  world.deps.quarantine = new QuarantineRouter(world.quarantine, new AnqQuarantineStore(world.deps.source, quarantineContainer));
  const sink = new CrashingSink(new EventGridArchiveSink({ endpoint: topic.url, key: 'topic-key' }));
  const deps: WatcherDeps = {
    api: rest,
    sink,
    checkpoints: new BlobCheckpointStore(container, checkpointBlob),
    config: { cluster: scope.cluster, exportPath: scope.exportPath, prefix: scope.prefix, snapshotSourceIds: [t.standIn.exportFileId], startFrom: 'oldest', pageSize: 3 },
    log: { info: () => undefined, warn: () => undefined },
  };
  // Events published before this harness belong to earlier tests.
  const first = topic.delivered.length;
  let next = first;
  return {
    world,
    quarantine: quarantineContainer,
    deps,
    sink,
    async deliver(options = {}) {
      const from = options.again ? first : next;
      const batch = topic.delivered.slice(from);
      next = topic.delivered.length;
      return ingestEvents(world, batch, scope);
    },
  };
}

/** The catalog as `sourceUrl → status` and the SOP instances it holds. */
function catalogOf(world: MemoryWorld): { sources: Record<string, string>; instances: number } {
  const sources: Record<string, string> = {};
  for (const doc of world.index.all()) sources[doc.sourceUrl] = doc.status;
  return { sources, instances: world.catalog.instances.docs.size };
}

/** What the latest snapshot says: every file of the prefix cataloged, every file the run saw deleted marked so. */
function expectedFrom(files: string[], gone: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of gone) out[anqSourceUrl(scope.cluster, `/replica/${f}`)] = 'deleted';
  for (const f of files) out[anqSourceUrl(scope.cluster, `/replica/${f}`)] = 'cataloged';
  return out;
}

describe('ANQ watcher and ingestion on the stand-ins', () => {
  test('given a burst across two snapshots, then modified, deleted and renamed files, a crash between publishing and checkpointing, and duplicate deliveries, the catalog ends as the latest snapshot says', async () => {
    const h = await harness('burst.json');
    await t.standIn.takeSnapshot('replication'); // the baseline the watcher starts from

    // A burst of 8 files across two snapshots (and a file outside the prefix, which is not the archive's).
    for (let i = 0; i < 5; i++) t.place(`dicom/study/${i}.dcm`, await variantOf(i));
    t.place('other/ignored.dcm', await variantOf(99));
    await t.standIn.takeSnapshot('replication');
    for (let i = 5; i < 8; i++) t.place(`dicom/study/${i}.dcm`, await variantOf(i));
    await t.standIn.takeSnapshot('replication');

    expect((await watchSnapshots(h.deps)).replicated).toBe(8);
    const cloudEvent = topic.delivered[0]!;
    expect(cloudEvent).toMatchObject({ specversion: '1.0', type: 'VNA.Archive.FileReplicated', source: 'anq://anq-local', datacontenttype: 'application/json' });
    expect(Object.keys(cloudEvent.data as object).sort()).toEqual(['mtime', 'path', 'size', 'snapshotId', 'snapshotName', 'url']);
    expect((await h.deliver()).every((s) => s === 'cataloged')).toBe(true);
    let files = [...Array(8).keys()].map((i) => `dicom/study/${i}.dcm`);
    expect(catalogOf(h.world)).toEqual({ sources: expectedFrom(files, []), instances: 8 });

    // Modified (another instance in the same file), deleted, renamed; and the watcher dies after publishing the first page.
    t.place('dicom/study/0.dcm', await variantOf(100, 'B'));
    fs.rmSync(path.join(t.target, 'dicom/study/1.dcm'));
    fs.renameSync(path.join(t.target, 'dicom/study/2.dcm'), path.join(t.target, 'dicom/study/2-renamed.dcm'));
    await t.standIn.takeSnapshot('replication');
    const before = topic.delivered.length;
    h.sink.crashAfterNextPublish = true;
    await expect(watchSnapshots(h.deps)).rejects.toThrow(/died after publishing/);
    const firstPage = topic.delivered.length - before;
    expect(firstPage).toBeGreaterThan(0);
    // The next run repeats that page (same ids), then goes on.
    await watchSnapshots(h.deps);
    const ids = topic.delivered.slice(before).map((e) => e.id as string);
    expect(ids.length - new Set(ids).size).toBe(firstPage);
    expect(new Set(ids).size).toBe(4); // 0 modified, 1 deleted, 2 deleted, 2-renamed created

    // Page 1 (the directory, 0.dcm modified, 1.dcm deleted) came twice; the repeat changes nothing.
    expect(firstPage).toBe(2);
    expect(await h.deliver()).toEqual(['cataloged', 'deleted', 'unchanged', 'unchanged', 'cataloged', 'deleted']);
    files = files.filter((f) => f !== 'dicom/study/1.dcm' && f !== 'dicom/study/2.dcm').concat('dicom/study/2-renamed.dcm');
    const after = catalogOf(h.world);
    expect(after.sources).toEqual(expectedFrom(files, ['dicom/study/1.dcm', 'dicom/study/2.dcm']));
    // 0.dcm now holds instance 100 (its old instance withdrawn), 1 gone, 2 moved under a new name.
    expect(after.instances).toBe(7);

    // Every event topic.delivered again: nothing changes.
    const again = await h.deliver({ again: true });
    expect(again.every((s) => s === 'unchanged')).toBe(true);
    expect(catalogOf(h.world)).toEqual(after);
  });

  test('given the watcher run twice over the same snapshots, then the checkpoint keeps the second run from publishing anything', async () => {
    const h = await harness('twice.json');
    await watchSnapshots({ ...h.deps, config: { ...h.deps.config, startFrom: 'latest' } });
    const before = topic.delivered.length;
    await watchSnapshots(h.deps);
    expect(topic.delivered.length).toBe(before);
    t.place('dicom/late.dcm', await variantOf(200));
    await t.standIn.takeSnapshot('replication');
    expect((await watchSnapshots(h.deps)).replicated).toBe(1);
    expect(topic.delivered.slice(before).map((e) => (e.data as { path: string }).path)).toEqual(['/replica/dicom/late.dcm']);
  });

  test('given a replicated file that is not DICOM, then it is recorded as failed and its replicated version copied to quarantine from the cluster', async () => {
    const h = await harness('quarantine.json');
    await watchSnapshots({ ...h.deps, config: { ...h.deps.config, startFrom: 'latest' } });
    const bytes = Buffer.from('this is a scanned requisition, not a DICOM file'.repeat(10));
    t.place('dicom/notes/req.txt', bytes);
    await t.standIn.takeSnapshot('replication');
    await watchSnapshots(h.deps);
    expect(await h.deliver()).toEqual(['failed']);
    const doc = h.world.index.all().find((d) => d.sourceUrl === anqSourceUrl(scope.cluster, '/replica/dicom/notes/req.txt'));
    expect(doc).toMatchObject({ status: 'failed', errorCode: 'DICOM_NOT_DICOM', quarantineBlob: 'anq/replica/dicom/notes/req.txt' });
    const copy = await h.quarantine.getBlobClient(doc!.quarantineBlob!).downloadToBuffer();
    expect(copy.equals(bytes)).toBe(true);
  });
});

describe('BlobCheckpointStore on Azurite', () => {
  test('given the checkpoint written by another run since it was read, then the write fails CATALOG_CONFLICT; creating it twice too', async () => {
    const container = BlobServiceClient.fromConnectionString(testStack().env.SourceStorage!).getContainerClient('anq-watcher');
    const a = new BlobCheckpointStore(container, 'conflict.json');
    const b = new BlobCheckpointStore(container, 'conflict.json');
    expect(await a.read()).toBeUndefined();
    const v1 = await a.write({ version: 1, lastSnapshotId: 1 }, undefined);
    await expect(b.write({ version: 1, lastSnapshotId: 1 }, undefined)).rejects.toMatchObject({ code: ErrorCodes.CATALOG_CONFLICT });
    const seen = await b.read();
    expect(seen).toEqual({ checkpoint: { version: 1, lastSnapshotId: 1 }, etag: v1 });
    await a.write({ version: 1, lastSnapshotId: 2, inProgress: { olderId: 2, newerId: 3, after: 'k' } }, v1);
    await expect(b.write({ version: 1, lastSnapshotId: 5 }, seen!.etag)).rejects.toMatchObject({ code: ErrorCodes.CATALOG_CONFLICT });
    expect((await b.read())?.checkpoint).toEqual({ version: 1, lastSnapshotId: 2, inProgress: { olderId: 2, newerId: 3, after: 'k' } });
  });
});

describe('placing a folder into the replication target (the ANQ mode of npm run ingest)', () => {
  test('given a folder of files, then they land under the prefix, one snapshot is taken, and the watcher publishes each once, all cataloged', async () => {
    const h = await harness('ingest.json');
    await watchSnapshots({ ...h.deps, config: { ...h.deps.config, startFrom: 'latest' } });
    const folder = path.join(t.dir, 'to-ingest');
    for (let i = 0; i < 4; i++) {
      fs.mkdirSync(path.join(folder, `series-${i % 2}`), { recursive: true });
      fs.writeFileSync(path.join(folder, `series-${i % 2}`, `${i}.dcm`), await variantOf(300 + i));
    }
    const placed = await placeAndSnapshot({ folder, targetDir: t.target, prefix: 'dicom/batch', restEndpoint: t.standIn.restEndpoint, restToken: TOKEN });
    expect(placed).toMatchObject({ files: 4, snapshot: { name: `${placed.snapshot.id}_ingest` } });
    expect(fs.existsSync(path.join(t.target, 'dicom', 'batch', 'series-1', '3.dcm'))).toBe(true);
    expect((await watchSnapshots(h.deps)).replicated).toBe(4);
    expect(await h.deliver()).toEqual(['cataloged', 'cataloged', 'cataloged', 'cataloged']);
  });
});

describe('the watcher\'s events topic.delivered to the local function host', () => {
  test('given the Event Grid webhook of the host as the topic, then the SDK\'s CloudEvents batch is accepted and reaches ingestReplicatedFile', async () => {
    const sink = new EventGridArchiveSink({ endpoint: `${testStack().hostUrl}/runtime/webhooks/eventgrid?functionName=ingestReplicatedFile`, key: 'local' });
    const event: ArchiveFileEvent = {
      id: 'anq-transport-check',
      type: 'VNA.Archive.FileReplicated',
      source: 'anq://anq-local',
      subject: '/replica/dicom/transport.dcm',
      time: new Date().toISOString(),
      data: { url: 'anq://anq-local/replica/dicom/transport.dcm', path: '/replica/dicom/transport.dcm', size: 1, mtime: null, snapshotId: 1, snapshotName: '1_replication' },
    };
    // Throws unless the host answers 2xx.
    await sink.publish([event]);
    const deadline = Date.now() + 10_000;
    while (!hostLog().includes('event anq-transport-check') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(hostLog()).toContain('event anq-transport-check');
  });
});
