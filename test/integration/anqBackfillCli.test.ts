/**
 * `npm run backfill -- --anq <path>` on s3rver and the Qumulo REST stand-in: the export's files
 * under the path, as of the newest snapshot, are listed through the S3 API and published as the
 * very CloudEvents the ANQ watcher's backfill publishes (compared field by field with a watcher
 * run on the same snapshot), checkpointed so that a second run publishes nothing, and each event
 * ingested (reading the file from s3rver) is cataloged once.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { BlobServiceClient } from '@azure/storage-blob';

import { STAND_IN_S3_KEY } from '../../local/services/anqStandIn';
import { QumuloRestClient } from '../../shared/anq/qumuloRest';
import { watchSnapshots } from '../../shared/anq/watcher';
import { BlobCheckpointStore, EventGridArchiveSink, S3SnapshotFileLister } from '../../shared/anq/watcherAdapters';
import { defaultProfile } from '../../shared/dicom/deid/profile';
import type { AnqScope } from '../../shared/events/ingestEvents';
import { anqS3Client, AnqSourceStore, RestSnapshotResolver } from '../../shared/storage/anqSourceStore';
import { SourceRouter } from '../../shared/storage/sourceRouter';
import { backfillMain } from '../../tools/backfill';
import { memoryWorld } from '../unit/fakes';
import { AnqTarget, dicomInstance, ingestEvents, LoopbackTopic, STAND_IN_BUCKET as BUCKET, STAND_IN_TOKEN as TOKEN, startAnqTarget, startLoopbackTopic } from './anqHarness';
import { testStack } from './stackEnv';

const FIXTURE = fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'dicom', 'pydicom-deb', 'test_files__MR_small.dcm'));
const CLUSTER = 'anq-cli';
const scope: AnqScope = { cluster: CLUSTER, bucket: BUCKET, exportPath: '/replica', prefix: 'dicom/', readFrom: 'snapshot' };

let t: AnqTarget;
let topic: LoopbackTopic;
let watcherTopic: LoopbackTopic;
let dir: string;

beforeAll(async () => {
  t = await startAnqTarget('anq-backfill-cli');
  topic = await startLoopbackTopic();
  watcherTopic = await startLoopbackTopic();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'anq-backfill-cli-'));
});

afterAll(async () => {
  await t?.close();
  await topic?.close();
  await watcherTopic?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** The functions' settings of the shared stack, with this stand-in as the ANQ source and the loopback topic. */
function cliEnv(): Record<string, string> {
  const base = Object.fromEntries(Object.entries(testStack().env).filter(([k]) => !k.startsWith('ANQ_')));
  return {
    ...base,
    ANQ_S3_ENDPOINT: t.standIn.s3Endpoint,
    ANQ_S3_BUCKET: BUCKET,
    ANQ_S3_ACCESS_KEY_ID: STAND_IN_S3_KEY.accessKeyId,
    ANQ_S3_SECRET_ACCESS_KEY: STAND_IN_S3_KEY.secretAccessKey,
    ANQ_CLUSTER: CLUSTER,
    ANQ_EXPORT_PATH: '/replica',
    ANQ_PREFIX: 'dicom/',
    ANQ_READ_FROM: 'snapshot',
    ANQ_REST_ENDPOINT: t.standIn.restEndpoint,
    ANQ_REST_TOKEN: TOKEN,
    ANQ_EVENTS_TOPIC_ENDPOINT: topic.url,
    ANQ_EVENTS_TOPIC_KEY: 'topic-key',
    TELEMETRY_CAPTURE_FILE: path.join(dir, 'telemetry.jsonl'),
  };
}

const strip = (e: Record<string, unknown>) => ({ id: e.id, type: e.type, source: e.source, subject: e.subject, time: e.time, data: e.data });

test('given an ANQ export with a snapshot, when the backfill runs with --anq on a directory, then it publishes the watcher\'s events for exactly the files under it, a second run nothing, and each is cataloged once', async () => {
  const inside = Array.from({ length: 9 }, (_, i) => `dicom/a/${String(i).padStart(2, '0')}.dcm`);
  for (const [i, f] of inside.entries()) t.place(f, await dicomInstance(FIXTURE, 700 + i));
  t.place('dicom/b/elsewhere.dcm', await dicomInstance(FIXTURE, 790));
  t.place('other/not-the-archive.dcm', await dicomInstance(FIXTURE, 791));
  const snapshot = await t.standIn.takeSnapshot('replication');

  const checkpoint = path.join(dir, 'cp.json');
  const args = ['--anq', '/replica/dicom/a', '--rate', '0', '--page-size', '4', '--batch-size', '3', '--concurrency', '2', '--checkpoint', checkpoint];
  expect(await backfillMain(args, cliEnv())).toBe(0);

  const paths = topic.delivered.map((e) => (e.data as { path: string }).path).sort();
  expect(paths).toEqual(inside.map((f) => `/replica/${f}`));
  expect(topic.delivered.every((e) => (e.data as { snapshotId: number }).snapshotId === snapshot.id)).toBe(true);

  // The same events as the watcher's backfill of that snapshot (same ids, so a repeat is recognised as one).
  const s3 = anqS3Client({ endpoint: t.standIn.s3Endpoint, bucket: BUCKET, region: 'us-east-1', ...STAND_IN_S3_KEY });
  const rest = new QumuloRestClient(t.standIn.restEndpoint, TOKEN);
  await watchSnapshots({
    api: rest,
    sink: new EventGridArchiveSink({ endpoint: watcherTopic.url, key: 'topic-key' }),
    checkpoints: new BlobCheckpointStore(BlobServiceClient.fromConnectionString(testStack().env.SourceStorage!).getContainerClient('anq-watcher'), `cli-compare-${Date.now()}.json`),
    files: new S3SnapshotFileLister(s3, BUCKET),
    config: { cluster: CLUSTER, exportPath: '/replica', prefix: 'dicom/a/', snapshotSourceIds: [t.standIn.exportFileId], startFrom: 'latest', backfill: true },
    log: { info: () => undefined, warn: () => undefined },
  });
  const byId = (a: Record<string, unknown>, b: Record<string, unknown>) => String(a.id).localeCompare(String(b.id));
  expect(topic.delivered.map(strip).sort(byId)).toEqual(watcherTopic.delivered.map(strip).sort(byId));

  // Checkpointed: the same run again publishes nothing.
  expect(await backfillMain(args, cliEnv())).toBe(0);
  expect(topic.delivered).toHaveLength(inside.length);

  // Ingested as the function ingests them, reading the files from s3rver as of the snapshot.
  const world = memoryWorld(defaultProfile());
  world.deps.source = new SourceRouter(world.source, new AnqSourceStore(s3, new RestSnapshotResolver((o) => rest.listSnapshots(o), () => true, 0)));
  const outcomes = await ingestEvents(world, topic.delivered, scope);
  expect(outcomes).toEqual(inside.map(() => 'cataloged'));
  expect(world.catalog.instances.docs.size).toBe(inside.length);
}, 180_000);

test('given --anq outside the configured export and prefix, then the backfill refuses before listing anything', async () => {
  const before = topic.delivered.length;
  expect(await backfillMain(['--anq', '/replica/other', '--checkpoint', path.join(dir, 'outside.json')], cliEnv())).toBe(2);
  expect(await backfillMain(['--anq', 'dicom/a'], cliEnv())).toBe(2);
  expect(topic.delivered).toHaveLength(before);
});
