/**
 * Every bundled sample (test/fixtures/dicom) through the ANQ path, compared with the blob path:
 * the same ingestion use case and in-memory catalog, fed once from a landing container (memory)
 * and once from the ANQ stand-ins (the files placed in the replication target, a snapshot
 * taken, the watcher's events delivered, each file read through the ANQ source store from
 * s3rver). The outcome of every file, and so the counts by status, must be the same.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { BlobServiceClient } from '@azure/storage-blob';

import { placeAndSnapshot } from '../../local/anqIngest';
import { AnqStandIn, STAND_IN_S3_KEY, startAnqStandIn } from '../../local/services/anqStandIn';
import { QumuloRestClient } from '../../shared/anq/qumuloRest';
import { ArchiveFileEvent, WatcherCheckpoint,watchSnapshots } from '../../shared/anq/watcher';
import { defaultProfile } from '../../shared/dicom/deid/profile';
import { AnqScope, encodeBlobName, parseIncomingEvent, resolveRequestSource } from '../../shared/events/ingestEvents';
import { ingestSourceFile } from '../../shared/ingest/ingestSourceFile';
import { anqS3Client, AnqSourceStore, RestSnapshotResolver } from '../../shared/storage/anqSourceStore';
import { AnqQuarantineStore, QuarantineRouter, SourceRouter } from '../../shared/storage/sourceRouter';
import { memoryWorld } from '../unit/fakes';
import { testStack } from './stackEnv';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'dicom');
const TOKEN = 'stand-in-token';
const scope: AnqScope = { cluster: 'anq-local', bucket: 'replica', exportPath: '/replica', prefix: 'dicom/', readFrom: 'snapshot' };

let dir: string;
let standIn: AnqStandIn;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'anq-samples-'));
  standIn = await startAnqStandIn({ targetDir: path.join(dir, 'target'), stateDir: path.join(dir, 'state'), exportPath: '/replica', bucket: 'replica', restToken: TOKEN });
});

afterAll(async () => {
  await standIn?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function countBy(statuses: Record<string, string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of Object.values(statuses)) out[s] = (out[s] ?? 0) + 1;
  return out;
}

test('given every bundled sample, then the ANQ path ends each file in the same status as the blob path', async () => {

  // ANQ: placed in the replication target, one snapshot, the watcher's events delivered in order.
  const rest = new QumuloRestClient(standIn.restEndpoint, TOKEN);
  const s3 = anqS3Client({ endpoint: standIn.s3Endpoint, bucket: 'replica', region: 'us-east-1', ...STAND_IN_S3_KEY });
  const blobService = BlobServiceClient.fromConnectionString(testStack().env.SourceStorage!);
  const quarantineContainer = blobService.getContainerClient('anq-samples-quarantine');
  await quarantineContainer.createIfNotExists();
  const anq = memoryWorld(defaultProfile());
  anq.deps.source = new SourceRouter(anq.source, new AnqSourceStore(s3, new RestSnapshotResolver((o) => rest.listSnapshots(o), () => true, 0)));
  anq.deps.quarantine = new QuarantineRouter(anq.quarantine, new AnqQuarantineStore(anq.deps.source, quarantineContainer));

  await standIn.takeSnapshot('baseline');
  const events: ArchiveFileEvent[] = [];
  let stored: { checkpoint: WatcherCheckpoint; etag: string } | undefined;
  const checkpoints = {
    read: async () => stored,
    write: async (checkpoint: WatcherCheckpoint) => ((stored = { checkpoint, etag: String(Math.random()) }), stored.etag),
  };
  const t0 = performance.now();
  const { files: samples } = await placeAndSnapshot({ folder: FIXTURES, targetDir: path.join(dir, 'target'), prefix: 'dicom/', restEndpoint: standIn.restEndpoint, restToken: TOKEN });
  const watched = await watchSnapshots({
    api: rest,
    sink: { publish: async (batch) => void events.push(...batch) },
    checkpoints,
    config: { cluster: scope.cluster, exportPath: '/replica', prefix: 'dicom/', startFrom: 'oldest' },
    log: { info: () => undefined, warn: () => undefined },
  });
  const anqStatus: Record<string, string> = {};
  for (const event of events) {
    const parsed = parseIncomingEvent(JSON.parse(JSON.stringify({ specversion: '1.0', ...event })));
    if (parsed.kind !== 'ingest') throw new Error(parsed.reason);
    const resolved = resolveRequestSource(parsed.request, { blobEndpoints: [], sourceContainers: [], anq: scope });
    if (resolved.kind !== 'source') throw new Error(resolved.reason);
    anqStatus[event.data.path.slice('/replica/dicom/'.length)] = (await ingestSourceFile(anq.deps, parsed.request, resolved.location)).status;
  }
  const anqMs = performance.now() - t0;

  // Blob: the same files, in the same order, from a landing container.
  const blob = memoryWorld(defaultProfile());
  const endpoint = 'http://127.0.0.1:10000/devstoreaccount1';
  const blobStatus: Record<string, string> = {};
  let n = 0;
  for (const rel of Object.keys(anqStatus)) {
    blob.source.put('anq-replica', rel, fs.readFileSync(path.join(FIXTURES, ...rel.split('/'))));
    const url = `${endpoint}/anq-replica/${encodeBlobName(rel)}`;
    blobStatus[rel] = (await ingestSourceFile(blob.deps, { kind: 'created', eventId: `b${++n}`, eventType: 'Microsoft.Storage.BlobCreated', url }, { canonicalUrl: url, container: 'anq-replica', blobName: rel })).status;
  }

  expect(watched.replicated).toBe(samples);
  expect(Object.keys(anqStatus)).toHaveLength(samples);
  // Samples that carry the same SOP instance compete by rank (the source's time, then a keyed
  // hash of its URL): which one of such a pair is reported superseded rather than cataloged
  // depends on the source's URL and time (S3 times have one-second resolution), not on the
  // path it came by. Per file, the outcomes must match with that one difference folded; the
  // catalogs must hold the same research instances.
  const folded = (m: Record<string, string>) => Object.fromEntries(Object.entries(m).map(([k, st]) => [k, st === 'superseded' ? 'cataloged' : st]));
  expect(folded(anqStatus)).toEqual(folded(blobStatus));
  expect([...anq.catalog.instances.docs.keys()].sort()).toEqual([...blob.catalog.instances.docs.keys()].sort());
  expect(anq.catalog.instances.docs.size).toBe(blob.catalog.instances.docs.size);
  console.log(`bundled samples through the ANQ path: ${samples} files (the manifest and README included), ${JSON.stringify(countBy(anqStatus))} (blob path: ${JSON.stringify(countBy(blobStatus))}), ${anq.catalog.instances.docs.size} instances; placed, snapshot, diffed and ingested in ${(anqMs / 1000).toFixed(1)} s`);
});
