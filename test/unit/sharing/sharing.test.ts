import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { ResearchCatalogReader } from '../../../shared/catalog/researchCatalog';
import { asciiValue } from '../../../shared/dicom/dataset';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import { Tags } from '../../../shared/dicom/tags';
import { ErrorCodes, isPipelineError, PipelineError } from '../../../shared/errors';
import type { IngestRequest, SourceLocation } from '../../../shared/events/ingestEvents';
import type { InstanceWithdrawnData } from '../../../shared/events/publisher';
import { ingestSourceFile } from '../../../shared/ingest/ingestSourceFile';
import { parseAgreementChange, parseAgreementRequest } from '../../../shared/sharing/agreement';
import { SharingCache } from '../../../shared/sharing/cache';
import { agreementKey } from '../../../shared/sharing/keys';
import { changeAgreement, closeLiveParts, createAgreement, exportInstance, type ExportMessage, feedLiveAgreements, getExport, livePartId, type SharingDeps, startExport, WITHDRAWN_BY, withdrawSharedInstance } from '../../../shared/sharing/sharing';
import { type MemoryWorld, memoryWorld } from '../fakes';
import { CapturingExportEvents, CapturingQueue, MemoryAgreements, MemoryDestinations, MemoryExports, MemorySharingAudit } from './fakes';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const SOURCES = [
  'pydicom-deb/test_files__MR_small.dcm',
  'pydicom-deb/test_files__SC_rgb_small_odd.dcm',
  'dcmjs/test__sample-dicom.dcm',
  'pydicom-deb/test_files__rtdose.dcm',
];
const ENDPOINT = 'http://127.0.0.1:10000/devstoreaccount1';
const MASTER = Buffer.from('unit-test-key-0123456789abcdefghijklmnop');

function loc(name: string): SourceLocation {
  return { canonicalUrl: `${ENDPOINT}/anq-replica/${encodeURIComponent(name)}`, container: 'anq-replica', blobName: name };
}
let n = 0;
function created(name: string): IngestRequest {
  return { kind: 'created', eventId: `evt-${++n}`, eventType: 'Microsoft.Storage.BlobCreated', url: loc(name).canonicalUrl };
}
function deleted(name: string): IngestRequest {
  return { kind: 'deleted', eventId: `evt-${++n}`, eventType: 'Microsoft.Storage.BlobDeleted', url: loc(name).canonicalUrl };
}

const noCatalog: ResearchCatalogReader = {
  query() {
    throw new Error('the unit tests hand the cohort in');
  },
};

const body = (over: Record<string, unknown> = {}) => ({
  partnerId: 'uni-a',
  partnerName: 'University A',
  profile: { builtIn: 'safe-harbor' },
  cohort: { filter: { Modality: 'MR' } },
  mode: 'once',
  validFrom: '2026-01-01',
  validUntil: '2027-01-01',
  destination: { kind: 'sas', container: 'partner-uni-a' },
  ...over,
});

interface World {
  w: MemoryWorld;
  deps: SharingDeps;
  agreements: MemoryAgreements;
  exports: MemoryExports;
  audit: MemorySharingAudit;
  destinations: MemoryDestinations;
  queue: CapturingQueue;
  events: CapturingExportEvents;
}

async function world(): Promise<World> {
  const w = memoryWorld(defaultProfile(), MASTER);
  for (const name of SOURCES) {
    w.source.put('anq-replica', name, readFileSync(join(FIXTURES, name)));
    const out = await ingestSourceFile(w.deps, created(name), loc(name));
    expect(out.status).toBe('cataloged');
  }
  const agreements = new MemoryAgreements();
  const exports = new MemoryExports();
  const audit = new MemorySharingAudit();
  const destinations = new MemoryDestinations();
  const queue = new CapturingQueue();
  const events = new CapturingExportEvents();
  const deps: SharingDeps = {
    agreements, exports, audit, destinations, queue, publisher: events,
    catalog: noCatalog,
    index: w.index,
    source: w.source,
    masterKey: MASTER,
    masterKeyId: 'k-test',
    sasMaxHours: 24,
    reservedContainers: ['anq-replica', 'research', 'quarantine'],
    limits: { maxHeaderBytes: 16 * 1024 * 1024 },
    burnedIn: { mode: 'allow' },
    now: () => new Date('2026-06-01T00:00:00Z'),
  };
  return { w, deps, agreements, exports, audit, destinations, queue, events };
}

function researchInstances(w: MemoryWorld) {
  return w.index.all().flatMap((d) => (d.research ? [{ studyInstanceUid: d.research.studyInstanceUid, seriesInstanceUid: d.research.seriesInstanceUid, sopInstanceUid: d.research.sopInstanceUid }] : []));
}

/** Every UID in a DICOM file's data set (UI values). */
async function uidsIn(file: Buffer): Promise<string[]> {
  const ds = (await parseDicomBuffer(file)).dataset;
  return [Tags.StudyInstanceUID, Tags.SeriesInstanceUID, Tags.SOPInstanceUID, Tags.FrameOfReferenceUID].flatMap((t) => asciiValue(ds.get(t)) ?? []);
}

async function runQueue(x: World, deliveries = 1): Promise<void> {
  const messages: ExportMessage[] = x.queue.messages.splice(0);
  for (let d = 1; d <= deliveries; d++) {
    for (const m of messages) await exportInstance(x.deps, m, { dequeueCount: d, maxDequeueCount: 5 });
  }
}

function partnerFiles(x: World, container: string): Map<string, Buffer> {
  return new Map([...x.destinations.files].filter(([k]) => k.startsWith(`${container}/`) && k.endsWith('.dcm')));
}

describe('agreement validation', () => {
  it.each([
    [{ partnerId: 'A B' }, 'partnerId'],
    [{ profile: { builtIn: 'nope' } }, 'profile.builtIn'],
    [{ cohort: { filter: { NoSuchKeyword: 'x' } } }, 'cohort.filter'],
    [{ cohort: { studies: ['1.2.x'] } }, 'cohort.studies[0]'],
    [{ cohort: {} }, 'cohort'],
    [{ mode: 'forever' }, 'mode'],
    [{ validFrom: '2026-13-45' }, 'validFrom'],
    [{ validUntil: '2025-01-01' }, 'validUntil'],
    [{ destination: { kind: 'ftp', container: 'abc' } }, 'destination.kind'],
    [{ destination: { kind: 'sas', container: 'Bad_Name' } }, 'destination.container'],
    [{ destination: { kind: 'managedIdentity', container: 'abc', accountUrl: 'http://x.blob.core.windows.net' } }, 'destination.accountUrl'],
  ])('given %j, then REQUEST_INVALID naming %s', (over, field) => {
    try {
      parseAgreementRequest(body(over));
      throw new Error('accepted');
    } catch (e) {
      expect(isPipelineError(e, ErrorCodes.REQUEST_INVALID)).toBe(true);
      expect((e as Error).message.startsWith(`${field}:`)).toBe(true);
    }
  });

  it('given a valid body, then it is normalised (ISO instants, unique studies)', () => {
    const a = parseAgreementRequest(body({ cohort: { studies: ['1.2.3', '1.2.3'] } }));
    expect(a.validFrom).toBe('2026-01-01T00:00:00.000Z');
    expect(a.cohort.studies).toEqual(['1.2.3']);
  });

  it('given a PATCH with another field, then REQUEST_INVALID naming it', () => {
    expect(() => parseAgreementChange({ status: 'suspended', partnerId: 'x' })).toThrow(/^partnerId:/);
    expect(() => parseAgreementChange({ status: 'gone' })).toThrow(/^status:/);
  });
});

describe('agreement keys', () => {
  it('given the same master key and agreement, then the same key; another agreement or master, another key', () => {
    const k = agreementKey(MASTER, 'agr-1');
    expect(k).toHaveLength(32);
    expect(agreementKey(MASTER, 'agr-1').equals(k)).toBe(true);
    expect(agreementKey(MASTER, 'agr-2').equals(k)).toBe(false);
    expect(agreementKey(Buffer.from('another-master-key-0123456789abcdef'), 'agr-1').equals(k)).toBe(false);
    expect(k.equals(MASTER.subarray(0, 32))).toBe(false);
  });
});

describe('agreements and exports', () => {
  it('given a container of the pipeline as destination, then REQUEST_INVALID', async () => {
    const x = await world();
    await expect(createAgreement(x.deps, body({ destination: { kind: 'sas', container: 'research' } }), 'caller')).rejects.toThrow(/^destination.container:/);
  });

  it('given a container held by another agreement, then STATE_CONFLICT until that one is revoked', async () => {
    const x = await world();
    const a = await createAgreement(x.deps, body(), 'caller-1');
    await expect(createAgreement(x.deps, body({ partnerId: 'other' }), 'caller-1')).rejects.toMatchObject({ code: ErrorCodes.STATE_CONFLICT });
    await changeAgreement(x.deps, a.id, { status: 'revoked' }, 'caller-1');
    expect((await createAgreement(x.deps, body({ partnerId: 'other' }), 'caller-1')).partnerId).toBe('other');
  });

  it('given two agreements over the same studies, then disjoint partner UIDs, none a research UID, and the same UIDs on a second run', async () => {
    const x = await world();
    const instances = researchInstances(x.w);
    const researchUids = new Set(x.w.index.all().flatMap((d) => (d.research ? [d.research.studyInstanceUid, d.research.seriesInstanceUid, d.research.sopInstanceUid] : [])));
    const a = await createAgreement(x.deps, body(), 'caller-1');
    const b = await createAgreement(x.deps, body({ partnerId: 'vendor-b', destination: { kind: 'sas', container: 'partner-vendor-b' } }), 'caller-1');
    await startExport(x.deps, a.id, 'caller-1', { instances });
    await startExport(x.deps, b.id, 'caller-1', { instances });
    await runQueue(x);
    const uidsOf = async (container: string) => new Set((await Promise.all([...partnerFiles(x, container).values()].map(uidsIn))).flat());
    const ua = await uidsOf('partner-uni-a');
    const ub = await uidsOf('partner-vendor-b');
    expect(partnerFiles(x, 'partner-uni-a').size).toBe(SOURCES.length);
    expect(ua.size).toBeGreaterThanOrEqual(SOURCES.length * 2);
    expect([...ua].filter((u) => ub.has(u))).toEqual([]);
    expect([...ua, ...ub].filter((u) => researchUids.has(u))).toEqual([]);
    // Reproducible from the key alone: a second export under the same agreement writes the same names and bytes.
    const before = new Map(partnerFiles(x, 'partner-uni-a'));
    x.destinations.files.clear();
    await startExport(x.deps, a.id, 'caller-1', { instances });
    await runQueue(x);
    const again = partnerFiles(x, 'partner-uni-a');
    expect([...again.keys()].sort()).toEqual([...before.keys()].sort());
    for (const [k, v] of again) expect(v.equals(before.get(k) as Buffer)).toBe(true);
  });

  it('given every message delivered twice and a worker that fails after writing a file, then each file once, counts exact, manifest hashes equal the files, one event id', async () => {
    const x = await world();
    const a = await createAgreement(x.deps, body(), 'caller-1');
    const started = await startExport(x.deps, a.id, 'caller-1', { instances: researchInstances(x.w) });
    expect(started).toMatchObject({ status: 'running', total: SOURCES.length, done: 0, left: SOURCES.length });
    const messages = x.queue.messages.splice(0);
    // The first delivery of the first message writes its file, then the worker fails before recording it.
    x.exports.failNextRecord = true;
    await expect(exportInstance(x.deps, messages[0] as ExportMessage, { dequeueCount: 1, maxDequeueCount: 5 })).rejects.toThrow(/unavailable/);
    for (const d of [2, 3]) for (const m of messages) await exportInstance(x.deps, m, { dequeueCount: d, maxDequeueCount: 5 });
    const files = partnerFiles(x, 'partner-uni-a');
    expect(files.size).toBe(SOURCES.length);
    const status = await getExport(x.deps, started.exportId);
    const bytes = [...files.values()].reduce((s, f) => s + f.length, 0);
    expect(status).toMatchObject({ status: 'completed', total: SOURCES.length, done: SOURCES.length, failed: 0, left: 0, bytes });
    expect(status.finishedAt).toBeDefined();
    const manifest = JSON.parse((x.destinations.files.get(`partner-uni-a/${status.manifest?.json}`) as Buffer).toString()) as { files: { blob: string; sha256: string; size: number }[]; keyId: string };
    expect(manifest.keyId).toBe(a.keyId);
    expect(manifest.files).toHaveLength(SOURCES.length);
    for (const f of manifest.files) {
      const stored = files.get(`partner-uni-a/${f.blob}`) as Buffer;
      expect(createHash('sha256').update(stored).digest('hex')).toBe(f.sha256);
      expect(stored.length).toBe(f.size);
    }
    const csv = (x.destinations.files.get(`partner-uni-a/${status.manifest?.csv}`) as Buffer).toString().trim().split('\r\n');
    expect(csv).toHaveLength(SOURCES.length + 1);
    expect(new Set(x.events.events.map((e) => e.id))).toEqual(new Set([started.exportId]));
    // The audit: one record per file that left, whatever the deliveries.
    const received = await x.audit.byPartner('uni-a');
    expect(received).toHaveLength(SOURCES.length);
    expect(received.every((r) => r.requestedBy === 'caller-1' && r.agreementId === a.id && r.destination === 'sas:partner-uni-a')).toBe(true);
  });

  it('given a transient failure, then it is thrown for redelivery, and at the last delivery recorded failed so that the export ends', async () => {
    const x = await world();
    const a = await createAgreement(x.deps, body(), 'caller-1');
    const started = await startExport(x.deps, a.id, 'caller-1', { instances: researchInstances(x.w).slice(0, 1) });
    const m = x.queue.messages.splice(0)[0] as ExportMessage;
    x.w.source.failNextRead = new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'storage unavailable');
    await expect(exportInstance(x.deps, m, { dequeueCount: 4, maxDequeueCount: 5 })).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
    x.w.source.failNextRead = new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'storage unavailable');
    expect(await exportInstance(x.deps, m, { dequeueCount: 5, maxDequeueCount: 5 })).toBe('failed');
    expect(await getExport(x.deps, started.exportId)).toMatchObject({ status: 'completed', done: 0, failed: 1, left: 0 });
  });

  it('given an instance whose source is not in the index, then it is recorded failed at once', async () => {
    const x = await world();
    const a = await createAgreement(x.deps, body(), 'caller-1');
    const s = await startExport(x.deps, a.id, 'caller-1', { instances: [{ studyInstanceUid: '1.2.3', seriesInstanceUid: '1.2.3.4', sopInstanceUid: '1.2.3.4.5' }] });
    await runQueue(x);
    expect(await getExport(x.deps, s.exportId)).toMatchObject({ status: 'completed', done: 0, failed: 1, left: 0 });
  });

  it('given a revoked agreement, then its grant is gone, what was shared is recorded, no export starts and pending messages fail', async () => {
    const x = await world();
    const a = await createAgreement(x.deps, body(), 'caller-1');
    expect(x.destinations.policies.get('partner-uni-a')).toBe(a.id);
    const started = await startExport(x.deps, a.id, 'caller-1', { instances: researchInstances(x.w) });
    const messages = x.queue.messages.splice(0);
    await exportInstance(x.deps, messages[0] as ExportMessage, { dequeueCount: 1, maxDequeueCount: 5 });
    const revoked = await changeAgreement(x.deps, a.id, { status: 'revoked', reason: 'term ended early' }, 'caller-2');
    expect(revoked.status).toBe('revoked');
    expect(revoked.sharedAtRevocation?.files).toBe(1);
    expect(revoked.sas?.url).toBe('');
    expect(x.destinations.policies.has('partner-uni-a')).toBe(false);
    await expect(startExport(x.deps, a.id, 'caller-1', { instances: [] })).rejects.toMatchObject({ code: ErrorCodes.STATE_CONFLICT });
    for (const m of messages.slice(1)) await exportInstance(x.deps, m, { dequeueCount: 1, maxDequeueCount: 5 });
    expect(partnerFiles(x, 'partner-uni-a').size).toBe(1);
    expect(await getExport(x.deps, started.exportId)).toMatchObject({ status: 'completed', done: 1, failed: SOURCES.length - 1 });
    await expect(changeAgreement(x.deps, a.id, { status: 'active' }, 'caller-2')).rejects.toMatchObject({ code: ErrorCodes.STATE_CONFLICT });
  });

  it('given a live agreement, then a cataloged instance of its cohort is fed (once, however often the event comes), another is not, and the part\'s manifest grows', async () => {
    const x = await world();
    const instances = researchInstances(x.w);
    const [first, second] = instances;
    // A catalog that answers a study's instance query with the study's instances (the cohort has no filter to apply).
    x.deps.catalog = {
      async *query<T>(_spec: unknown, options?: { partitionKey?: string }) {
        for (const i of instances) if (i.studyInstanceUid === options?.partitionKey) yield { id: `instance:${i.sopInstanceUid}`, type: 'instance', dicom: {}, ...i } as unknown as T;
      },
    };
    const a = await createAgreement(x.deps, body({ mode: 'live', cohort: { studies: [first?.studyInstanceUid] } }), 'caller-1');
    expect(await feedLiveAgreements(x.deps, first as (typeof instances)[number])).toEqual([a.id]);
    expect(await feedLiveAgreements(x.deps, first as (typeof instances)[number])).toEqual([a.id]);
    const other = instances.find((i) => i.studyInstanceUid !== first?.studyInstanceUid) as (typeof instances)[number];
    expect(await feedLiveAgreements(x.deps, other)).toEqual([]);
    await runQueue(x);
    const part = livePartId(a.id, new Date('2026-06-01T00:00:00Z'));
    expect(await getExport(x.deps, part)).toMatchObject({ status: 'running', total: 1, done: 1, failed: 0, left: 0 });
    const manifestOf = () => JSON.parse((x.destinations.files.get(`partner-uni-a/manifests/${part}.json`) as Buffer).toString()) as { files: unknown[] };
    expect(manifestOf().files).toHaveLength(1);
    // A second instance of the same study later that day: the part and its manifest grow.
    const sameStudy = instances.filter((i) => i.studyInstanceUid === first?.studyInstanceUid && i.sopInstanceUid !== first?.sopInstanceUid);
    for (const i of sameStudy) await feedLiveAgreements(x.deps, i);
    await runQueue(x);
    expect(await getExport(x.deps, part)).toMatchObject({ total: 1 + sameStudy.length, done: 1 + sameStudy.length });
    expect(manifestOf().files).toHaveLength(1 + sameStudy.length);
    expect(second).toBeDefined();
  });
});

describe('export speed and ends', () => {
  it('given the queue failing part way through the enqueue, then the POST fails SERVICE_UNAVAILABLE, the failed batch is recorded failed, and the export ends failed (not running) with counts that add up', async () => {
    const x = await world();
    const a = await createAgreement(x.deps, body(), 'caller-1');
    // Two messages of the batch go, then the queue fails: which went is unknown to the sender.
    x.queue.failAfter = 2;
    await expect(startExport(x.deps, a.id, 'caller-1', { instances: researchInstances(x.w) })).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
    const sent = x.queue.messages.splice(0);
    expect(sent).toHaveLength(2);
    const exportId = (sent[0] as ExportMessage).exportId;
    const status = await getExport(x.deps, exportId);
    expect(status).toMatchObject({ status: 'failed', total: SOURCES.length, done: 0, failed: SOURCES.length, left: 0, error: { code: ErrorCodes.SERVICE_UNAVAILABLE } });
    expect(status.error?.message).toMatch(new RegExp(`${SOURCES.length} instance\\(s\\) were not enqueued`));
    expect(status.finishedAt).toBeDefined();
    // The messages that did go find their instance recorded and write nothing.
    for (const m of sent) expect(await exportInstance(x.deps, m, { dequeueCount: 1, maxDequeueCount: 5 })).toBe('already-done');
    expect(partnerFiles(x, 'partner-uni-a').size).toBe(0);
    expect(await getExport(x.deps, exportId)).toMatchObject({ status: 'failed', done: 0, failed: SOURCES.length, left: 0 });
    const manifest = JSON.parse((x.destinations.files.get(`partner-uni-a/${status.manifest?.json}`) as Buffer).toString()) as { files: unknown[]; counts: { failed: number } };
    expect(manifest.files).toHaveLength(0);
    expect(manifest.counts.failed).toBe(SOURCES.length);
    expect(x.events.events.map((e) => e.id)).toEqual([exportId]);
  });

  it('given the messages already done when the enqueue fails, then the enqueue itself ends the export failed', async () => {
    const x = await world();
    const a = await createAgreement(x.deps, body(), 'caller-1');
    // The first message is done before the second is enqueued (a fast worker), then the queue fails.
    let calls = 0;
    x.deps.queue = {
      send: async (messages) => {
        if (calls++ > 0) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'queue unavailable');
        for (const m of messages.slice(0, 1)) await exportInstance(x.deps, m, { dequeueCount: 1, maxDequeueCount: 5 });
        throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'queue unavailable');
      },
    };
    await expect(startExport(x.deps, a.id, 'caller-1', { instances: researchInstances(x.w) })).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
    const [job] = [...x.exports.v.docs.values()].map((d) => d.doc).filter((d) => d.type === 'job');
    const status = await getExport(x.deps, (job as { exportId: string }).exportId);
    // The batch that failed is recorded failed whole; the one instance its worker finished is kept.
    expect(status).toMatchObject({ status: 'failed', done: 1, failed: SOURCES.length - 1, left: 0 });
  });

  it('given a worker that fails between its item and the gate, then the redelivery counts it and the export completes', async () => {
    const x = await world();
    const a = await createAgreement(x.deps, body(), 'caller-1');
    const started = await startExport(x.deps, a.id, 'caller-1', { instances: researchInstances(x.w) });
    const messages = x.queue.messages.splice(0);
    const last = messages.pop() as ExportMessage;
    for (const m of messages) await exportInstance(x.deps, m, { dequeueCount: 1, maxDequeueCount: 5 });
    x.exports.failNextCount = true;
    await expect(exportInstance(x.deps, last, { dequeueCount: 1, maxDequeueCount: 5 })).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
    expect((await getExport(x.deps, started.exportId)).status).toBe('running');
    expect(await exportInstance(x.deps, last, { dequeueCount: 2, maxDequeueCount: 5 })).toBe('already-done');
    expect(await getExport(x.deps, started.exportId)).toMatchObject({ status: 'completed', done: SOURCES.length, left: 0 });
  });

  it('given a worker with a cache, then it reads the job and the agreement once, and a revocation elsewhere stops it within the cache time (at once through the same deps)', async () => {
    const x = await world();
    let clock = 0;
    const worker: SharingDeps = { ...x.deps, cache: new SharingCache(5_000, () => clock) };
    const a = await createAgreement(x.deps, body(), 'caller-1');
    await startExport(x.deps, a.id, 'caller-1', { instances: researchInstances(x.w) });
    const messages = x.queue.messages.splice(0);
    let reads = 0;
    const get = x.agreements.get.bind(x.agreements);
    x.agreements.get = async (id: string) => {
      reads += 1;
      return get(id);
    };
    expect(await exportInstance(worker, messages[0] as ExportMessage, { dequeueCount: 1, maxDequeueCount: 5 })).toBe('written');
    expect(reads).toBe(1);
    // Revoked by another process (the API's deps, one read of its own): this worker still holds the agreement for up to 5 s.
    await changeAgreement(x.deps, a.id, { status: 'revoked' }, 'caller-2');
    clock = 4_999;
    expect(await exportInstance(worker, messages[1] as ExportMessage, { dequeueCount: 1, maxDequeueCount: 5 })).toBe('written');
    expect(reads).toBe(2);
    clock = 5_000;
    expect(await exportInstance(worker, messages[2] as ExportMessage, { dequeueCount: 1, maxDequeueCount: 5 })).toBe('failed');
    // Through the same deps, a change is seen at once.
    const b = await createAgreement(worker, body({ partnerId: 'uni-b', destination: { kind: 'sas', container: 'partner-uni-b' } }), 'caller-1');
    await startExport(worker, b.id, 'caller-1', { instances: researchInstances(x.w) });
    const bMessages = x.queue.messages.splice(0);
    expect(await exportInstance(worker, bMessages[0] as ExportMessage, { dequeueCount: 1, maxDequeueCount: 5 })).toBe('written');
    await changeAgreement(worker, b.id, { status: 'suspended' }, 'caller-2');
    expect(await exportInstance(worker, bMessages[1] as ExportMessage, { dequeueCount: 1, maxDequeueCount: 5 })).toBe('failed');
  });
});

describe('live parts close', () => {
  /** A live agreement over the first study, fed its instances on 2026-06-01; the clock is then the test's. */
  async function liveWorld() {
    const x = await world();
    const instances = researchInstances(x.w);
    const first = instances[0] as (typeof instances)[number];
    x.deps.catalog = {
      async *query<T>(_spec: unknown, options?: { partitionKey?: string }) {
        for (const i of instances) if (i.studyInstanceUid === options?.partitionKey) yield { id: `instance:${i.sopInstanceUid}`, type: 'instance', dicom: {}, ...i } as unknown as T;
      },
    };
    let at = new Date('2026-06-01T10:00:00Z');
    x.deps.now = () => at;
    const a = await createAgreement(x.deps, body({ mode: 'live', cohort: { studies: [first.studyInstanceUid] } }), 'caller-1');
    const study = instances.filter((i) => i.studyInstanceUid === first.studyInstanceUid);
    for (const i of study) await feedLiveAgreements(x.deps, i);
    const part = livePartId(a.id, at);
    return { x, a, part, study, other: instances.find((i) => i.studyInstanceUid !== first.studyInstanceUid), setNow: (iso: string) => (at = new Date(iso)) };
  }

  it('given a part whose day is over and grace past, then the timer closes it: final manifest, then VNA.Export.Completed with its location and counts, once', async () => {
    const { x, part, study, setNow } = await liveWorld();
    await runQueue(x);
    expect(await closeLiveParts(x.deps)).toEqual([]);
    setNow('2026-06-02T00:04:59Z');
    expect(await closeLiveParts(x.deps)).toEqual([]);
    expect(x.events.events).toEqual([]);
    setNow('2026-06-02T00:05:00Z');
    expect(await closeLiveParts(x.deps)).toEqual([part]);
    const status = await getExport(x.deps, part);
    expect(status).toMatchObject({ status: 'completed', total: study.length, done: study.length, failed: 0, left: 0, manifest: { json: `manifests/${part}.json`, csv: `manifests/${part}.csv` } });
    expect(x.events.events).toHaveLength(1);
    expect(x.events.events[0]).toMatchObject({ id: part, data: { exportId: part, done: study.length, failed: 0, manifest: { json: `manifests/${part}.json` } } });
    const manifest = JSON.parse((x.destinations.files.get(`partner-uni-a/manifests/${part}.json`) as Buffer).toString()) as { files: unknown[] };
    expect(manifest.files).toHaveLength(study.length);
    expect(await closeLiveParts(x.deps)).toEqual([]);
    expect(x.events.events).toHaveLength(1);
  });

  it('given a part with a message still in flight at its day\'s end, then it stays open until that message is done, whose worker closes it', async () => {
    const { x, part, study, setNow } = await liveWorld();
    const pending = x.queue.messages.splice(0);
    const late = pending.pop() as ExportMessage;
    for (const m of pending) await exportInstance(x.deps, m, { dequeueCount: 1, maxDequeueCount: 5 });
    setNow('2026-06-02T01:00:00Z');
    expect(await closeLiveParts(x.deps)).toEqual([]);
    expect((await getExport(x.deps, part)).status).toBe('running');
    await exportInstance(x.deps, late, { dequeueCount: 1, maxDequeueCount: 5 });
    expect(await getExport(x.deps, part)).toMatchObject({ status: 'completed', done: study.length, left: 0 });
    expect(x.events.events.map((e) => e.id)).toEqual([part]);
  });

  it('given the first instance of a new day, then the feed opens the day\'s part and closes the day before', async () => {
    const { x, a, part, study, setNow } = await liveWorld();
    await runQueue(x);
    setNow('2026-06-02T09:00:00Z');
    await feedLiveAgreements(x.deps, study[0] as (typeof study)[number]);
    expect((await getExport(x.deps, part)).status).toBe('completed');
    expect(x.events.events.map((e) => e.id)).toEqual([part]);
    const next = livePartId(a.id, new Date('2026-06-02T09:00:00Z'));
    expect(await getExport(x.deps, next)).toMatchObject({ status: 'running', total: 1 });
  });
});

describe('deletion propagates to partners', () => {
  const MI = { kind: 'managedIdentity', accountUrl: 'https://partnerb.blob.core.windows.net', container: 'incoming' };

  /** Exports every instance under a SAS agreement (ours) and a managed-identity one (the partner's account); the first source is then deleted. */
  async function exportedThenDeleted() {
    const x = await world();
    const instances = researchInstances(x.w);
    const ours = await createAgreement(x.deps, body(), 'caller-1');
    const theirs = await createAgreement(x.deps, body({ partnerId: 'vendor-b', destination: MI }), 'caller-1');
    await startExport(x.deps, ours.id, 'caller-1', { instances });
    await startExport(x.deps, theirs.id, 'caller-1', { instances });
    await runQueue(x);
    const name = SOURCES[0] as string;
    const source = x.w.index.all().find((d) => d.blobName === name);
    const research = source?.research;
    if (!research) throw new Error('the first source was not cataloged');
    x.w.source.delete('anq-replica', name);
    expect((await ingestSourceFile(x.w.deps, deleted(name), loc(name))).status).toBe('deleted');
    return { x, ours, theirs, research, sourceUrl: loc(name).canonicalUrl };
  }

  it('given a deleted source, then ingestion announces the withdrawn research instance by research UIDs only', async () => {
    const { x, research, sourceUrl } = await exportedThenDeleted();
    expect(x.w.publisher.withdrawals.map((e) => e.data)).toEqual([{ studyInstanceUid: research.studyInstanceUid, seriesInstanceUid: research.seriesInstanceUid, sopInstanceUid: research.sopInstanceUid }]);
    expect(JSON.stringify(x.w.publisher.withdrawals)).not.toContain(sourceUrl);
  });

  it('given the announcement fails, then the redelivered deletion announces it again with the same event id', async () => {
    const x = await world();
    const name = SOURCES[1] as string;
    x.w.source.delete('anq-replica', name);
    const tried: { data: InstanceWithdrawnData; id: string }[] = [];
    const failing = {
      ...x.w.deps,
      publisher: {
        instanceCataloged: async () => undefined,
        instanceWithdrawn: async (data: InstanceWithdrawnData, id: string) => {
          tried.push({ data, id });
          throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'topic unavailable');
        },
      },
    };
    await expect(ingestSourceFile(failing, deleted(name), loc(name))).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
    // The research instance is gone already; the redelivery still announces it, then records the deletion.
    expect((await ingestSourceFile(x.w.deps, deleted(name), loc(name))).status).toBe('deleted');
    expect(tried).toHaveLength(1);
    expect(x.w.publisher.withdrawals).toEqual(tried);
    expect((await ingestSourceFile(x.w.deps, deleted(name), loc(name))).status).toBe('unchanged');
    expect(x.w.publisher.withdrawals).toHaveLength(1);
  });

  it('given a withdrawn instance, then our container loses the copy, the partner account is notified by partner UIDs, and each agreement records one withdrawal', async () => {
    const { x, ours, theirs, research } = await exportedThenDeleted();
    const filesBefore = partnerFiles(x, 'partner-uni-a').size;
    const sharedOurs = (await x.audit.byPartner('uni-a')).find((r) => r.action === 'shared' && x.exports.v.get(`${r.exportId}/item:${research.sopInstanceUid}`)?.doc);
    if (!sharedOurs) throw new Error('the instance was not shared');
    const result = await withdrawSharedInstance(x.deps, research);
    expect(result).toEqual({ deleted: 1, notified: 1 });
    expect(x.destinations.files.has(`partner-uni-a/${sharedOurs.blob}`)).toBe(false);
    expect(partnerFiles(x, 'partner-uni-a').size).toBe(filesBefore - 1);
    // The partner's account is not ours to delete in: the copy stays, the partner is told.
    expect(partnerFiles(x, 'incoming').size).toBe(SOURCES.length);
    expect(x.events.withdrawals).toHaveLength(1);
    const notice = x.events.withdrawals[0];
    const theirsShared = (await x.audit.byPartner('vendor-b')).find((r) => r.action === 'shared' && r.blob === notice?.data.blob);
    expect(notice?.data).toMatchObject({ agreementId: theirs.id, partnerId: 'vendor-b', destination: 'https://partnerb.blob.core.windows.net/incoming', sopInstanceUid: theirsShared?.sopInstanceUid });
    const researchUids = [research.studyInstanceUid, research.seriesInstanceUid, research.sopInstanceUid];
    for (const u of researchUids) expect(JSON.stringify(x.events.withdrawals)).not.toContain(u);
    const withdrawn = [...(await x.audit.byPartner('uni-a')), ...(await x.audit.byPartner('vendor-b'))].filter((r) => r.action === 'withdrawn');
    expect(withdrawn.map((r) => [r.agreementId, r.requestedBy]).sort()).toEqual([[ours.id, WITHDRAWN_BY], [theirs.id, WITHDRAWN_BY]].sort());
    expect(withdrawn.find((r) => r.agreementId === ours.id)).toMatchObject({ blob: sharedOurs.blob, sopInstanceUid: sharedOurs.sopInstanceUid, sha256: sharedOurs.sha256 });
    // The manifest is left as shipped; the withdrawal list next to it names the file.
    const list = x.destinations.files.get(`partner-uni-a/manifests/${sharedOurs.exportId}.withdrawn.csv`)?.toString() ?? '';
    expect(list.split('\r\n')[1]).toMatch(new RegExp(`^2026-06-01T00:00:00.000Z,deleted,${sharedOurs.blob},`));
    expect(x.destinations.files.get(`partner-uni-a/manifests/${sharedOurs.exportId}.json`)?.toString()).toContain(sharedOurs.blob);
  });

  it('given the withdrawal event delivered again, then nothing is recorded twice and the notice keeps its id', async () => {
    const { x, research } = await exportedThenDeleted();
    await withdrawSharedInstance(x.deps, research);
    const audit = [...x.audit.records.values()];
    const items = [...x.exports.v.docs.values()].map((d) => d.doc);
    await withdrawSharedInstance(x.deps, research);
    expect([...x.audit.records.values()]).toEqual(audit);
    expect([...x.exports.v.docs.values()].map((d) => d.doc)).toEqual(items);
    expect(new Set(x.events.withdrawals.map((e) => e.id)).size).toBe(1);
    expect(x.events.withdrawals).toHaveLength(2);
  });

  it('given a revoked agreement, then its copies are still withdrawn and recorded', async () => {
    const { x, ours, research } = await exportedThenDeleted();
    await changeAgreement(x.deps, ours.id, { status: 'revoked' }, 'caller-2');
    const before = partnerFiles(x, 'partner-uni-a').size;
    expect((await withdrawSharedInstance(x.deps, research)).deleted).toBe(1);
    expect(partnerFiles(x, 'partner-uni-a').size).toBe(before - 1);
    expect((await x.audit.byPartner('uni-a')).filter((r) => r.action === 'withdrawn')).toHaveLength(1);
  });

  it('given the source deleted while its partner copy is written, then the worker withdraws the copy it wrote', async () => {
    const x = await world();
    const a = await createAgreement(x.deps, body(), 'caller-1');
    const name = SOURCES[0] as string;
    const research = x.w.index.all().find((d) => d.blobName === name)?.research;
    if (!research) throw new Error('the first source was not cataloged');
    const { blob: _blob, ...instance } = research;
    void _blob;
    // The source read, then deleted before the copy is recorded (the deletion's withdrawal found no item).
    const source = x.deps.source;
    const deps: SharingDeps = {
      ...x.deps,
      source: {
        ...source,
        getProperties: (c, b, o) => source.getProperties(c, b, o),
        readRange: async (c, b, e, off, n) => {
          const data = await source.readRange(c, b, e, off, n);
          x.w.source.delete(c, b);
          return data;
        },
      } as SharingDeps['source'],
    };
    await startExport(deps, a.id, 'caller-1', { instances: [instance] });
    for (const m of x.queue.messages.splice(0)) expect(await exportInstance(deps, m, { dequeueCount: 1, maxDequeueCount: 5 })).toBe('written');
    expect(partnerFiles(x, 'partner-uni-a').size).toBe(0);
    expect((await x.audit.byPartner('uni-a')).map((r) => r.action)).toEqual(['shared', 'withdrawn']);
  });

  it('given a research instance no export holds, then nothing is withdrawn or recorded', async () => {
    const x = await world();
    await createAgreement(x.deps, body(), 'caller-1');
    const [instance] = researchInstances(x.w);
    if (!instance) throw new Error('no instance');
    expect(await withdrawSharedInstance(x.deps, instance)).toEqual({ deleted: 0, notified: 0 });
    expect(x.audit.records.size).toBe(0);
    expect(x.events.withdrawals).toEqual([]);
  });
});
