/**
 * The watcher's backfill on real local services: files already in the replication target when
 * the watcher first runs (in the snapshot it starts from, so in no tree diff) are listed through
 * s3rver's ListObjectsV2 of that snapshot's `.snapshot` directory, published as CloudEvents
 * through the Event Grid SDK to a loopback topic, with the checkpoint as a blob in Azurite, and
 * each event is ingested by the use case reading the file from s3rver (catalog in memory).
 * The watcher process dies mid-backfill and the next run resumes from its checkpoint.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { BlobServiceClient } from '@azure/storage-blob';

import { STAND_IN_S3_KEY } from '../../local/services/anqStandIn';
import { QumuloRestClient } from '../../shared/anq/qumuloRest';
import { ArchiveEventSink, ArchiveFileEvent, watchSnapshots } from '../../shared/anq/watcher';
import { BlobCheckpointStore, EventGridArchiveSink, S3SnapshotFileLister } from '../../shared/anq/watcherAdapters';
import { defaultProfile } from '../../shared/dicom/deid/profile';
import { AnqScope, anqSourceUrl } from '../../shared/events/ingestEvents';
import { anqS3Client, AnqSourceStore, RestSnapshotResolver } from '../../shared/storage/anqSourceStore';
import { SourceRouter } from '../../shared/storage/sourceRouter';
import { memoryWorld } from '../unit/fakes';
import { AnqTarget, dicomInstance, ingestEvents, LoopbackTopic, STAND_IN_BUCKET as BUCKET, STAND_IN_TOKEN as TOKEN, startAnqTarget, startLoopbackTopic } from './anqHarness';
import { testStack } from './stackEnv';

const FIXTURE = fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'dicom', 'pydicom-deb', 'test_files__MR_small.dcm'));
const scope: AnqScope = { cluster: 'anq-local', bucket: BUCKET, exportPath: '/replica', prefix: 'dicom/', readFrom: 'snapshot' };

let t: AnqTarget;
let topic: LoopbackTopic;

beforeAll(async () => {
  t = await startAnqTarget('anq-backfill');
  topic = await startLoopbackTopic();
});

afterAll(async () => {
  await t?.close();
  await topic?.close();
});

const instance = (i: number) => dicomInstance(FIXTURE, i);

/** Dies after publishing its Nth batch, before the checkpoint of that page is written. */
class DyingSink implements ArchiveEventSink {
  private batches = 0;
  constructor(
    private readonly inner: ArchiveEventSink,
    private readonly dieAfter: number,
  ) {}

  async publish(events: ArchiveFileEvent[]): Promise<void> {
    await this.inner.publish(events);
    if (++this.batches === this.dieAfter) throw new Error('the watcher process died after publishing, before checkpointing');
  }
}

test('given files in the replication target before the watcher\'s first run, then the backfill publishes each, a crash mid-backfill resumes from the checkpoint, and each file is cataloged exactly once', async () => {
  const files = Array.from({ length: 11 }, (_, i) => `dicom/before/${String(i).padStart(2, '0')}.dcm`);
  for (const [i, f] of files.entries()) t.place(f, await instance(500 + i));
  t.place('other/not-the-archive.dcm', await instance(599));
  const base = await t.standIn.takeSnapshot('replication');

  const s3 = anqS3Client({ endpoint: t.standIn.s3Endpoint, bucket: BUCKET, region: 'us-east-1', ...STAND_IN_S3_KEY });
  const rest = new QumuloRestClient(t.standIn.restEndpoint, TOKEN);
  const checkpoints = new BlobCheckpointStore(BlobServiceClient.fromConnectionString(testStack().env.SourceStorage!).getContainerClient('anq-watcher'), `backfill-${Date.now()}.json`);
  const deps = (sink: ArchiveEventSink) => ({
    api: rest,
    sink,
    checkpoints,
    files: new S3SnapshotFileLister(s3, BUCKET),
    config: { cluster: scope.cluster, exportPath: scope.exportPath, prefix: scope.prefix, snapshotSourceIds: [t.standIn.exportFileId], startFrom: 'oldest' as const, backfill: true, pageSize: 4, publishBatch: 4 },
    log: { info: () => undefined, warn: () => undefined },
  });
  const topicSink = new EventGridArchiveSink({ endpoint: topic.url, key: 'topic-key' });

  // The first run dies after publishing the second page (files 5-8), before checkpointing it.
  await expect(watchSnapshots(deps(new DyingSink(topicSink, 2)))).rejects.toThrow(/died after publishing/);
  expect((await checkpoints.read())?.checkpoint).toEqual({ version: 1, lastSnapshotId: base.id, backfill: { snapshotId: base.id, after: files[3] } });
  const beforeResume = topic.delivered.length;
  expect(beforeResume).toBe(8);

  // A file placed meanwhile reaches the pipeline through the next snapshot's diff, after the backfill.
  t.place('dicom/after.dcm', await instance(600));
  await t.standIn.takeSnapshot('replication');
  const r = await watchSnapshots(deps(topicSink));
  expect(r).toMatchObject({ backfilled: 7, replicated: 8, snapshotsDiffed: 1 });
  // The resumed run started at the page that was not checkpointed: files 5-8 again, then the rest; the first page never again.
  const paths = topic.delivered.map((e) => (e.data as { path: string }).path);
  expect(paths.slice(beforeResume)).toEqual([...files.slice(4), 'dicom/after.dcm'].map((f) => `/replica/${f}`));
  expect(new Set(paths)).toEqual(new Set([...files, 'dicom/after.dcm'].map((f) => `/replica/${f}`)));
  expect((await checkpoints.read())?.checkpoint).toEqual({ version: 1, lastSnapshotId: base.id + 1 });

  // Every event as the topic got it, into the ingestion reading from s3rver.
  const world = memoryWorld(defaultProfile());
  world.deps.source = new SourceRouter(world.source, new AnqSourceStore(s3, new RestSnapshotResolver((o) => rest.listSnapshots(o), () => true, 0)));
  const outcomes = await ingestEvents(world, topic.delivered, scope);
  // The repeated page changes nothing.
  expect(outcomes.filter((s) => s === 'cataloged')).toHaveLength(12);
  expect(outcomes.filter((s) => s === 'unchanged')).toHaveLength(4);
  const sources = world.index.all().map((d) => d.sourceUrl).sort();
  expect(sources).toEqual([...files, 'dicom/after.dcm'].map((f) => anqSourceUrl(scope.cluster, `/replica/${f}`)).sort());
  expect(world.index.all().every((d) => d.status === 'cataloged')).toBe(true);
  expect(world.catalog.instances.docs.size).toBe(12);
});
