/**
 * Rapid overwrites and deletes of one source, with ingestions of its versions overlapping: the
 * research side must end holding exactly the current version's instance (nothing once the
 * source is deleted), and the index must record the current version.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { asciiValue } from '../../../shared/dicom/dataset';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import { Tags } from '../../../shared/dicom/tags';
import { ErrorCodes, PipelineError } from '../../../shared/errors';
import type { IngestRequest, SourceLocation } from '../../../shared/events/ingestEvents';
import { ingestSourceFile, researchBlobName } from '../../../shared/ingest/ingestSourceFile';
import type { ResearchStore } from '../../../shared/storage/stores';
import { deferred, MemoryWorld, memoryWorld } from '../fakes';

const FIXTURE = readFileSync(join(__dirname, '..', '..', 'fixtures', 'dicom', 'pydicom-deb', 'test_files__MR_small.dcm'));
const ENDPOINT = 'http://127.0.0.1:10000/devstoreaccount1';
const NAME = 'site/overwritten.dcm';
const LOC: SourceLocation = { canonicalUrl: `${ENDPOINT}/anq-replica/${encodeURIComponent(NAME)}`, container: 'anq-replica', blobName: NAME };
/** Every version is written in the same second: Last-Modified cannot order them. */
const SAME_SECOND = new Date('2024-05-01T10:00:00Z');

let sopOfFixture = '';
beforeAll(async () => {
  sopOfFixture = asciiValue((await parseDicomBuffer(FIXTURE)).dataset.get(Tags.SOPInstanceUID))!;
});

/** The fixture with its SOP Instance UID's last digits replaced (same length, so lengths stay valid). */
function version(n: number): Buffer {
  const out = Buffer.from(FIXTURE);
  const uid = Buffer.from(sopOfFixture, 'latin1');
  const suffix = String(100 + n).padStart(3, '0');
  for (let at = out.indexOf(uid); at >= 0; at = out.indexOf(uid, at + 1)) out.write(`${sopOfFixture.slice(0, -3)}${suffix}`, at, 'latin1');
  return out;
}

/** The fixture with other values in its last pixels (same SOP instance, other content). */
function contentVariant(marker: string): Buffer {
  const out = Buffer.from(FIXTURE);
  // The pixel data ends where the data set trailing padding (FFFC,FFFC) begins.
  const padding = out.lastIndexOf(Buffer.from([0xfc, 0xff, 0xfc, 0xff]));
  out.write(marker, padding - marker.length, 'latin1');
  return out;
}

let n = 0;
function created(): IngestRequest {
  return { kind: 'created', eventId: `evt-${++n}`, eventType: 'Microsoft.Storage.BlobCreated', url: LOC.canonicalUrl };
}
function deleted(): IngestRequest {
  return { kind: 'deleted', eventId: `evt-${++n}`, eventType: 'Microsoft.Storage.BlobDeleted', url: LOC.canonicalUrl };
}

/** Holds the research write of the first ingestion that reaches it until the test lets it go. */
function holdFirstResearchWrite(w: MemoryWorld): { reached: Promise<void>; release: () => void } {
  const reached = deferred();
  const gate = deferred();
  const write = w.research.write.bind(w.research);
  let held = false;
  const patched: ResearchStore['write'] = async (name, data, options) => {
    if (!held) {
      held = true;
      reached.resolve();
      await gate.promise;
    }
    return write(name, data, options);
  };
  w.research.write = patched;
  return { reached: reached.promise, release: gate.resolve };
}

async function expectOnlyCurrent(w: MemoryWorld, sopOfCurrent: string | undefined): Promise<void> {
  const record = w.index.all()[0];
  if (sopOfCurrent === undefined) {
    expect(w.research.blobs.size).toBe(0);
    expect(w.catalog.instances.docs.size).toBe(0);
    expect(w.catalog.studies.size).toBe(0);
    expect(record?.status ?? 'deleted').toBe('deleted');
    return;
  }
  expect(w.catalog.instances.docs.size).toBe(1);
  expect(w.research.blobs.size).toBe(1);
  expect(record?.status).toBe('cataloged');
  expect(record?.original?.sopInstanceUid).toBe(sopOfCurrent);
  expect(record?.eTag).toBe((await w.source.getProperties(LOC.container, LOC.blobName))?.etag);
  const [blobName] = [...w.research.blobs.keys()];
  expect(record?.research?.blob).toBe(blobName);
  const [doc] = [...w.catalog.instances.docs.values()];
  expect(doc?.doc.researchBlob).toBe(blobName);
  expect([...w.catalog.studies.values()].map((s) => s.numberOfStudyRelatedInstances)).toEqual([1]);
}

const sopOf = async (data: Buffer) => asciiValue((await parseDicomBuffer(data)).dataset.get(Tags.SOPInstanceUID))!;

describe('ingestSourceFile under overlapping versions of one source', () => {
  let w: MemoryWorld;
  beforeEach(() => {
    w = memoryWorld(defaultProfile());
  });

  it('given an older version that finishes after a newer one written in the same second, then only the newer instance stays and the index records it', async () => {
    const hold = holdFirstResearchWrite(w);
    w.source.put(LOC.container, LOC.blobName, version(1), SAME_SECOND);
    const older = ingestSourceFile(w.deps, created(), LOC);
    await hold.reached;
    const v2 = version(2);
    w.source.put(LOC.container, LOC.blobName, v2, SAME_SECOND);
    expect((await ingestSourceFile(w.deps, created(), LOC)).status).toBe('cataloged');
    hold.release();
    expect((await older).status).toBe('superseded');
    await expectOnlyCurrent(w, await sopOf(v2));
  });

  it('given an older version whose index write wins the race, then the newer version still ends recorded and the older instance is removed', async () => {
    // The older version is held after its research write, so it records its index last.
    w.source.put(LOC.container, LOC.blobName, version(1), SAME_SECOND);
    const refresh = w.catalog.refreshSummaries.bind(w.catalog);
    const gate = deferred();
    const reached = deferred();
    let calls = 0;
    w.catalog.refreshSummaries = async (study, series) => {
      if (++calls === 1) {
        reached.resolve();
        await gate.promise;
      }
      return refresh(study, series);
    };
    const older = ingestSourceFile(w.deps, created(), LOC);
    await reached.promise;
    const v2 = version(2);
    w.source.put(LOC.container, LOC.blobName, v2, SAME_SECOND);
    await ingestSourceFile(w.deps, created(), LOC);
    gate.resolve();
    await older;
    // Both events were handled: nothing is pending that could mend the state later.
    await expectOnlyCurrent(w, await sopOf(v2));
    // A redelivery changes nothing.
    expect((await ingestSourceFile(w.deps, created(), LOC)).status).toBe('unchanged');
    await expectOnlyCurrent(w, await sopOf(v2));
  });

  it('given twenty versions uploaded in one second and ingested concurrently, then one instance stays, and none after the source is deleted', async () => {
    const runs: Promise<unknown>[] = [];
    let last: Buffer = Buffer.alloc(0);
    for (let i = 1; i <= 20; i++) {
      last = version(i);
      w.source.put(LOC.container, LOC.blobName, last, SAME_SECOND);
      runs.push(ingestSourceFile(w.deps, created(), LOC));
      // Let some of the ingestions get a little way before the next upload.
      if (i % 3 === 0) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(runs);
    await expectOnlyCurrent(w, await sopOf(last));

    w.source.delete(LOC.container, LOC.blobName);
    expect((await ingestSourceFile(w.deps, deleted(), LOC)).status).toBe('deleted');
    await expectOnlyCurrent(w, undefined);
  });

  it('given a version deleted while its ingestion is in flight, then nothing is left on the research side', async () => {
    const hold = holdFirstResearchWrite(w);
    w.source.put(LOC.container, LOC.blobName, version(1), SAME_SECOND);
    const inFlight = ingestSourceFile(w.deps, created(), LOC);
    await hold.reached;
    w.source.delete(LOC.container, LOC.blobName);
    await ingestSourceFile(w.deps, deleted(), LOC);
    hold.release();
    await inFlight;
    await expectOnlyCurrent(w, undefined);
  });

  it('given two versions of one SOP instance whose older copy is written last, then the research copy holds the newer content', async () => {
    const hold = holdFirstResearchWrite(w);
    w.source.put(LOC.container, LOC.blobName, contentVariant('OLDER1'), SAME_SECOND);
    const older = ingestSourceFile(w.deps, created(), LOC);
    await hold.reached;
    const newer = contentVariant('NEWER2');
    w.source.put(LOC.container, LOC.blobName, newer, SAME_SECOND);
    const out = await ingestSourceFile(w.deps, created(), LOC);
    hold.release();
    await older;
    await expectOnlyCurrent(w, await sopOf(newer));
    const copy = w.research.blobs.get(researchBlobName(out.research!))!.data;
    expect(copy.includes(Buffer.from('NEWER2', 'latin1'))).toBe(true);
    expect(copy.includes(Buffer.from('OLDER1', 'latin1'))).toBe(false);
  });

  it('given a delete event for a blob that never existed, then only a tombstone is recorded', async () => {
    const out = await ingestSourceFile(w.deps, deleted(), LOC);
    expect(out.status).toBe('unchanged');
    expect(w.index.all()).toEqual([expect.objectContaining({ status: 'deleted' })]);
    const out2 = await ingestSourceFile(w.deps, created(), LOC);
    expect(out2.status).toBe('unchanged');
    expect(w.index.all()).toEqual([expect.objectContaining({ status: 'deleted' })]);
    await expectOnlyCurrent(w, undefined);
  });

  it('given a version read before its blob was deleted, when the delete event is handled before that version is recorded, then its first record is refused by the tombstone and its instance withdrawn', async () => {
    w.source.put(LOC.container, LOC.blobName, version(1), SAME_SECOND);
    const held = holdFirstResearchWrite(w);
    const ingestion = ingestSourceFile(w.deps, created(), LOC);
    await held.reached;
    w.source.delete(LOC.container, LOC.blobName);
    expect((await ingestSourceFile(w.deps, deleted(), LOC)).status).toBe('unchanged');
    held.release();
    expect((await ingestion).status).toBe('superseded');
    await expectOnlyCurrent(w, undefined);
    expect(w.index.all()).toEqual([expect.objectContaining({ status: 'deleted' })]);
  });

  it('given a version recorded after the delete event read the index and traced the source, then the tombstone\'s next round withdraws its instance', async () => {
    w.source.put(LOC.container, LOC.blobName, version(1), SAME_SECOND);
    expect((await ingestSourceFile(w.deps, created(), LOC)).status).toBe('cataloged');
    w.source.delete(LOC.container, LOC.blobName);
    // What the deletion saw when it started: no record and nothing traced to the source (the
    // ingestion had not written yet). Its tombstone's create then meets the record.
    const get = w.index.get.bind(w.index);
    let reads = 0;
    w.index.get = async (id) => (++reads <= 2 ? undefined : get(id));
    w.catalog.findInstancesBySource = async () => [];
    w.research.findBySource = async () => [];
    expect((await ingestSourceFile(w.deps, deleted(), LOC)).status).toBe('deleted');
    expect(reads).toBeGreaterThan(2);
    await expectOnlyCurrent(w, undefined);
    expect(w.index.all()).toEqual([expect.objectContaining({ status: 'deleted', research: expect.anything() })]);
  });

  it('given a research copy written and its instance document failing, when the source is deleted before a retry, then the retry withdraws the copy', async () => {
    w.source.put(LOC.container, LOC.blobName, version(1), SAME_SECOND);
    const put = w.catalog.putInstance.bind(w.catalog);
    w.catalog.putInstance = async () => {
      throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'catalog unavailable');
    };
    const event = created();
    await expect(ingestSourceFile(w.deps, event, LOC)).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
    expect(w.research.blobs.size).toBe(1);
    w.catalog.putInstance = put;
    w.source.delete(LOC.container, LOC.blobName);
    // Event Grid redelivers the failed event; the delete event comes too.
    await ingestSourceFile(w.deps, event, LOC);
    await ingestSourceFile(w.deps, deleted(), LOC);
    await expectOnlyCurrent(w, undefined);
    expect(w.index.all()).toEqual([expect.objectContaining({ status: 'deleted' })]);
  });

  it('given a cataloged source whose index and catalog documents were lost, when it is deleted, then its research copy is withdrawn', async () => {
    w.source.put(LOC.container, LOC.blobName, version(1), SAME_SECOND);
    await ingestSourceFile(w.deps, created(), LOC);
    w.index.map.docs.clear();
    w.catalog.instances.docs.clear();
    w.source.delete(LOC.container, LOC.blobName);
    expect((await ingestSourceFile(w.deps, deleted(), LOC)).status).toBe('deleted');
    expect(w.research.blobs.size).toBe(0);
  });

  it('given an older version whose instance document failed, when its event comes back after a newer version was cataloged, then the older copy is withdrawn', async () => {
    const v1 = w.source.put(LOC.container, LOC.blobName, version(1), SAME_SECOND);
    const put = w.catalog.putInstance.bind(w.catalog);
    w.catalog.putInstance = async () => {
      throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'catalog unavailable');
    };
    const event = { ...created(), etag: v1.etag };
    await expect(ingestSourceFile(w.deps, event, LOC)).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
    w.catalog.putInstance = put;
    const v2 = version(2);
    const p2 = w.source.put(LOC.container, LOC.blobName, v2, SAME_SECOND);
    expect((await ingestSourceFile(w.deps, { ...created(), etag: p2.etag }, LOC)).status).toBe('cataloged');
    expect(w.research.blobs.size).toBe(2);
    // The first event's retry: its version is gone, the current one is recorded.
    expect((await ingestSourceFile(w.deps, event, LOC)).status).toBe('unchanged');
    await expectOnlyCurrent(w, await sopOf(v2));
  });

  it('given the research catalog unavailable when a cataloged source is deleted, then the research copy is withdrawn at once and the event is retried for the rest', async () => {
    w.source.put(LOC.container, LOC.blobName, version(1), SAME_SECOND);
    await ingestSourceFile(w.deps, created(), LOC);
    const unavailable = async () => {
      throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'catalog unavailable');
    };
    const { getInstance, findInstancesBySource } = w.catalog;
    w.catalog.getInstance = unavailable;
    w.catalog.findInstancesBySource = unavailable;
    w.source.delete(LOC.container, LOC.blobName);
    const event = deleted();
    await expect(ingestSourceFile(w.deps, event, LOC)).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
    expect(w.research.blobs.size).toBe(0);
    w.catalog.getInstance = getInstance;
    w.catalog.findInstancesBySource = findInstancesBySource;
    expect((await ingestSourceFile(w.deps, event, LOC)).status).toBe('deleted');
    await expectOnlyCurrent(w, undefined);
  });
});
