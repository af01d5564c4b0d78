import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { asciiValue } from '../../../shared/dicom/dataset';
import { defaultProfile, loadProfile } from '../../../shared/dicom/deid/profile';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import { Tags } from '../../../shared/dicom/tags';
import { ErrorCodes, PipelineError } from '../../../shared/errors';
import type { IngestRequest, SourceLocation } from '../../../shared/events/ingestEvents';
import { ingestSourceFile, researchBlobName, sourceId } from '../../../shared/ingest/ingestSourceFile';
import { MemoryWorld,memoryWorld } from '../fakes';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const fixture = (p: string) => readFileSync(join(FIXTURES, p));
const ENDPOINT = 'http://127.0.0.1:10000/devstoreaccount1';

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

describe('ingestSourceFile', () => {
  let w: MemoryWorld;
  beforeEach(() => {
    w = memoryWorld(defaultProfile());
  });

  it('given a new DICOM file, then one research copy, one instance, summaries and an index record', async () => {
    const data = fixture('pydicom-deb/test_files__MR_small.dcm');
    w.source.put('anq-replica', 'site-a/Doe^John/mr.dcm', data);
    const out = await ingestSourceFile(w.deps, created('site-a/Doe^John/mr.dcm'), loc('site-a/Doe^John/mr.dcm'));

    expect(out.status).toBe('cataloged');
    const research = out.research!;
    expect(research.sopInstanceUid).toMatch(/^2\.25\.\d+$/);
    const blob = w.research.blobs.get(researchBlobName(research));
    expect(blob).toBeDefined();
    const parsed = await parseDicomBuffer(blob!.data);
    expect(asciiValue(parsed.dataset.get(Tags.SOPInstanceUID))).toBe(research.sopInstanceUid);
    expect(asciiValue(parsed.meta.get(Tags.MediaStorageSOPInstanceUID))).toBe(research.sopInstanceUid);
    expect(w.catalog.instances.docs.size).toBe(1);
    expect(w.catalog.studies.get(research.studyInstanceUid)?.numberOfStudyRelatedInstances).toBe(1);
    const record = w.index.all()[0]!;
    expect(record.status).toBe('cataloged');
    expect(record.original?.sopInstanceUid).toBe(asciiValue((await parseDicomBuffer(data)).dataset.get(Tags.SOPInstanceUID)));
    expect(record.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(record.deidentification?.gate).toBe('passed');
    expect(w.publisher.events).toHaveLength(1);
    // The source path carries a name: it must not reach the research side.
    for (const name of w.research.blobs.keys()) expect(name).not.toMatch(/Doe|John|site-a/);
  });

  it('given the same event twice, then the second changes nothing, drops the bytes it was sent unread and announces the instance again under the same event id', async () => {
    w.source.put('anq-replica', 'a.dcm', fixture('pydicom-deb/test_files__MR_small.dcm'));
    const req = created('a.dcm');
    await ingestSourceFile(w.deps, req, loc('a.dcm'));
    const readsAfterFirst = w.source.reads;
    const again = await ingestSourceFile(w.deps, req, loc('a.dcm'));
    expect(again.status).toBe('unchanged');
    // The request that found the version is released unread.
    expect(w.source.reads).toBe(readsAfterFirst);
    expect(w.source.discarded).toBe(1);
    expect(w.catalog.instances.docs.size).toBe(1);
    // At least once, as Event Grid itself: the same event, which subscribers tell by its id.
    expect(w.publisher.events).toHaveLength(2);
    expect(w.publisher.events[1]).toEqual(w.publisher.events[0]);
  });

  it('given the announcement failing after the record is written, then the event is redelivered and the redelivery announces the instance under the id the first try had', async () => {
    w.source.put('anq-replica', 'a.dcm', fixture('pydicom-deb/test_files__MR_small.dcm'));
    const req = created('a.dcm');
    const tried: { data: unknown; id: string }[] = [];
    const publish = w.publisher.instanceCataloged.bind(w.publisher);
    w.publisher.instanceCataloged = async (data, id) => {
      tried.push({ data, id });
      if (tried.length === 1) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'the topic answered 503');
      await publish(data, id);
    };
    await expect(ingestSourceFile(w.deps, req, loc('a.dcm'))).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE, transient: true });
    expect(w.index.all()[0]?.status).toBe('cataloged');
    expect(w.publisher.events).toHaveLength(0);

    const again = await ingestSourceFile(w.deps, req, loc('a.dcm'));
    expect(again.status).toBe('unchanged');
    expect(w.publisher.events).toEqual([tried[0]]);
    expect(w.index.all()[0]?.announcedAs).toBe(tried[0]?.id);
    // Another event for the version (the watcher's, a backfill's) announces nothing.
    expect((await ingestSourceFile(w.deps, created('a.dcm'), loc('a.dcm'))).status).toBe('unchanged');
    expect(w.publisher.events).toHaveLength(1);
  });

  it('given a redelivered event of a source whose instance another source holds, then nothing is announced for it', async () => {
    w.source.put('anq-replica', 'new.dcm', fixture('pydicom-deb/test_files__MR_small_bigendian.dcm'), new Date('2024-02-01T00:00:00Z'));
    w.source.put('anq-replica', 'old.dcm', fixture('pydicom-deb/test_files__MR_small.dcm'), new Date('2024-01-01T00:00:00Z'));
    const old = created('old.dcm');
    expect((await ingestSourceFile(w.deps, old, loc('old.dcm'))).status).toBe('cataloged');
    expect((await ingestSourceFile(w.deps, created('new.dcm'), loc('new.dcm'))).status).toBe('cataloged');
    expect(w.publisher.events).toHaveLength(2);
    // The older source's record still says cataloged, but the instance is the newer source's now.
    expect((await ingestSourceFile(w.deps, old, loc('old.dcm'))).status).toBe('unchanged');
    expect(w.publisher.events).toHaveLength(2);
  });

  it('given a delete event that arrives before the create event, then nothing is cataloged and the deletion is recorded', async () => {
    // The blob was created and deleted before either event was handled: it was never recorded.
    const out1 = await ingestSourceFile(w.deps, deleted('gone.dcm'), loc('gone.dcm'));
    const out2 = await ingestSourceFile(w.deps, created('gone.dcm'), loc('gone.dcm'));
    expect(out1.status).toBe('unchanged');
    expect(out2.status).toBe('unchanged');
    // A tombstone, without a version or a research instance.
    expect(w.index.all()).toEqual([expect.objectContaining({ status: 'deleted', deletedAt: expect.any(String) })]);
    expect(w.index.all()[0]!.research).toBeUndefined();
    expect(w.index.all()[0]!.eTag).toBeUndefined();
    expect(w.catalog.instances.docs.size).toBe(0);
  });

  it('given a tombstone, when the source is written again, then the new version is cataloged over it', async () => {
    await ingestSourceFile(w.deps, deleted('back.dcm'), loc('back.dcm'));
    w.source.put('anq-replica', 'back.dcm', fixture('pydicom-deb/test_files__MR_small.dcm'));
    const out = await ingestSourceFile(w.deps, created('back.dcm'), loc('back.dcm'));
    expect(out.status).toBe('cataloged');
    expect(w.index.all()).toEqual([expect.objectContaining({ status: 'cataloged', research: expect.objectContaining({ sopInstanceUid: out.research!.sopInstanceUid }) })]);
    expect(w.catalog.instances.docs.size).toBe(1);
  });

  it('given a cataloged file that is deleted, then the research copy and instance are withdrawn', async () => {
    w.source.put('anq-replica', 'a.dcm', fixture('pydicom-deb/test_files__MR_small.dcm'));
    const first = await ingestSourceFile(w.deps, created('a.dcm'), loc('a.dcm'));
    w.source.delete('anq-replica', 'a.dcm');
    const out = await ingestSourceFile(w.deps, deleted('a.dcm'), loc('a.dcm'));
    expect(out.status).toBe('deleted');
    expect(w.research.blobs.size).toBe(0);
    expect(w.catalog.instances.docs.size).toBe(0);
    expect(w.catalog.studies.has(first.research!.studyInstanceUid)).toBe(false);
    expect(w.index.all()[0]?.research?.sopInstanceUid).toBe(first.research!.sopInstanceUid);
  });

  it('given an overwritten blob holding another instance, then the old instance is replaced by the new one', async () => {
    w.source.put('anq-replica', 'a.dcm', fixture('pydicom-deb/test_files__MR_small.dcm'), new Date('2024-01-01T00:00:00Z'));
    const first = await ingestSourceFile(w.deps, created('a.dcm'), loc('a.dcm'));
    w.source.put('anq-replica', 'a.dcm', fixture('pydicom-deb/test_files__rtdose.dcm'), new Date('2024-01-02T00:00:00Z'));
    const second = await ingestSourceFile(w.deps, created('a.dcm'), loc('a.dcm'));
    expect(second.status).toBe('cataloged');
    expect(second.research!.sopInstanceUid).not.toBe(first.research!.sopInstanceUid);
    expect(w.catalog.instances.docs.size).toBe(1);
    expect(w.research.blobs.size).toBe(1);
    expect(w.index.all()).toHaveLength(1);
  });

  it('given an overwritten blob whose instance moved to another series, then only the new copy remains and the instance is counted once', async () => {
    const base = fixture('pydicom-deb/test_files__MR_small.dcm');
    const series = asciiValue((await parseDicomBuffer(base)).dataset.get(Tags.SeriesInstanceUID))!;
    const moved = Buffer.from(base);
    const at = moved.indexOf(Buffer.from(series, 'latin1'), 132);
    moved.write(`${series.slice(0, -3)}999`, at, 'latin1');
    w.source.put('anq-replica', 'a.dcm', base, new Date('2024-01-01T00:00:00Z'));
    const first = await ingestSourceFile(w.deps, created('a.dcm'), loc('a.dcm'));
    w.source.put('anq-replica', 'a.dcm', moved, new Date('2024-01-02T00:00:00Z'));
    const second = await ingestSourceFile(w.deps, created('a.dcm'), loc('a.dcm'));
    expect(second.research!.sopInstanceUid).toBe(first.research!.sopInstanceUid);
    expect(second.research!.seriesInstanceUid).not.toBe(first.research!.seriesInstanceUid);
    expect([...w.research.blobs.keys()]).toEqual([researchBlobName(second.research!)]);
    expect(w.catalog.instances.docs.size).toBe(1);
    expect(w.catalog.studies.get(second.research!.studyInstanceUid)).toMatchObject({ numberOfStudyRelatedInstances: 1, numberOfStudyRelatedSeries: 1 });
    expect(w.catalog.series.has(first.research!.seriesInstanceUid)).toBe(false);
  });

  it('given two files with the same SOP instance, then both are recorded and the newer source is kept on the research side', async () => {
    const implicitLe = fixture('pydicom-deb/test_files__MR_small.dcm');
    const bigEndian = fixture('pydicom-deb/test_files__MR_small_bigendian.dcm');
    w.source.put('anq-replica', 'new.dcm', bigEndian, new Date('2024-02-01T00:00:00Z'));
    w.source.put('anq-replica', 'old.dcm', implicitLe, new Date('2024-01-01T00:00:00Z'));
    // The newer file's event comes first; the older one must not displace it.
    const a = await ingestSourceFile(w.deps, created('new.dcm'), loc('new.dcm'));
    const b = await ingestSourceFile(w.deps, created('old.dcm'), loc('old.dcm'));
    expect(a.status).toBe('cataloged');
    expect(b.status).toBe('superseded');
    expect(a.research!.sopInstanceUid).toBe(b.research!.sopInstanceUid);
    expect(w.index.all().map((d) => d.status).sort()).toEqual(['cataloged', 'cataloged']);
    const kept = await parseDicomBuffer(w.research.blobs.get(researchBlobName(a.research!))!.data);
    expect(kept.transferSyntaxUid).toBe('1.2.840.10008.1.2.2');
    expect(w.catalog.instances.docs.size).toBe(1);
  });

  it('given a truncated copy of an instance already kept from a newer source, then it still fails as truncated', async () => {
    w.source.put('anq-replica', 'good.dcm', fixture('pydicom-deb/test_files__MR_small.dcm'), new Date('2024-02-01T00:00:00Z'));
    w.source.put('anq-replica', 'truncated.dcm', fixture('pydicom-deb/test_files__MR_truncated.dcm'), new Date('2024-01-01T00:00:00Z'));
    expect((await ingestSourceFile(w.deps, created('good.dcm'), loc('good.dcm'))).status).toBe('cataloged');
    const out = await ingestSourceFile(w.deps, created('truncated.dcm'), loc('truncated.dcm'));
    expect(out).toEqual({ status: 'failed', errorCode: ErrorCodes.DICOM_TRUNCATED });
  });

  it.each([
    ['pydicom-deb/test_files__MR_truncated.dcm', ErrorCodes.DICOM_TRUNCATED],
    ['pydicom-deb/test_files__SC_rgb_jpeg.dcm', ErrorCodes.DICOM_ELEMENT_TOO_LARGE],
    ['pydicom-deb/test_files__no_meta.dcm', ErrorCodes.DICOM_NOT_DICOM],
    ['fo-dicom/DICOMDIR', ErrorCodes.DICOM_DICOMDIR],
  ])('given the bad file %s, then it is recorded as failed with %s and copied to quarantine', async (file, code) => {
    w.source.put('anq-replica', 'bad.dcm', fixture(file));
    const out = await ingestSourceFile(w.deps, created('bad.dcm'), loc('bad.dcm'));
    expect(out).toEqual({ status: 'failed', errorCode: code });
    const record = w.index.all()[0]!;
    expect(record.status).toBe('failed');
    expect(record.errorCode).toBe(code);
    expect(record.errorMessage).toBeTruthy();
    expect(w.quarantine.copies.get('anq-replica/bad.dcm')?.errorCode).toBe(code);
    expect(w.research.blobs.size).toBe(0);
  });

  it('given a text file, then it fails as not DICOM without a retry', async () => {
    w.source.put('anq-replica', 'notes.txt', Buffer.from('Patient John Doe, see attached scans\n'.repeat(10)));
    const out = await ingestSourceFile(w.deps, created('notes.txt'), loc('notes.txt'));
    expect(out.errorCode).toBe(ErrorCodes.DICOM_NOT_DICOM);
  });

  it('given a storage fault, then the error is rethrown for Event Grid to retry and nothing is recorded', async () => {
    w.source.put('anq-replica', 'a.dcm', fixture('pydicom-deb/test_files__MR_small.dcm'));
    w.source.failNextRead = new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'storage answered 503');
    await expect(ingestSourceFile(w.deps, created('a.dcm'), loc('a.dcm'))).rejects.toMatchObject({ code: ErrorCodes.SERVICE_UNAVAILABLE });
    expect(w.index.all()).toHaveLength(0);
    const retry = await ingestSourceFile(w.deps, created('a.dcm'), loc('a.dcm'));
    expect(retry.status).toBe('cataloged');
  });

  it('given a blob that changes while it is read, then the new version is ingested', async () => {
    const first = fixture('pydicom-deb/test_files__MR_small.dcm');
    const second = fixture('pydicom-deb/test_files__MR_small_bigendian.dcm');
    w.source.put('anq-replica', 'a.dcm', first);
    // The first request brings only part of the file; a new version lands before the rest is read.
    w.source.openLimit = 1000;
    w.source.replaceAfterOpen = second;
    const out = await ingestSourceFile(w.deps, created('a.dcm'), loc('a.dcm'));
    expect(out.status).toBe('cataloged');
    const record = w.index.all()[0]!;
    expect(record.eTag).toBe((await w.source.getProperties('anq-replica', 'a.dcm'))!.etag);
    expect(record.sha256).toBe(createHash('sha256').update(second).digest('hex'));
    expect(w.source.reads).toBeGreaterThanOrEqual(2);
  });

  it('given a first request that brings only part of the file, then the rest is read from where it ended and the hash covers every byte', async () => {
    const data = fixture('pydicom-deb/test_files__MR_small.dcm');
    w.source.put('anq-replica', 'a.dcm', data);
    w.source.openLimit = 333;
    const out = await ingestSourceFile(w.deps, created('a.dcm'), loc('a.dcm'));
    expect(out.status).toBe('cataloged');
    expect(w.index.all()[0]!.sha256).toBe(createHash('sha256').update(data).digest('hex'));
    expect(w.source.opens).toBe(1);
    expect(w.source.reads).toBe(1);
  });

  it('given a small new file, then one request reads it whole: no ranged read, and no properties request before its first record (the create-only record and the tombstones guard it)', async () => {
    w.source.put('anq-replica', 'a.dcm', fixture('pydicom-deb/test_files__MR_small.dcm'));
    const getProperties = jest.spyOn(w.source, 'getProperties');
    const out = await ingestSourceFile(w.deps, created('a.dcm'), loc('a.dcm'));
    expect(out.status).toBe('cataloged');
    expect(w.source.opens).toBe(1);
    expect(w.source.reads).toBe(0);
    expect(getProperties).not.toHaveBeenCalled();
  });

  it('given a recorded file overwritten, then one properties request checks the new version before it replaces the record', async () => {
    w.source.put('anq-replica', 'a.dcm', fixture('pydicom-deb/test_files__MR_small.dcm'), new Date('2024-01-01T00:00:00Z'));
    await ingestSourceFile(w.deps, created('a.dcm'), loc('a.dcm'));
    w.source.put('anq-replica', 'a.dcm', fixture('pydicom-deb/test_files__MR_small_bigendian.dcm'), new Date('2024-01-02T00:00:00Z'));
    const getProperties = jest.spyOn(w.source, 'getProperties');
    const out = await ingestSourceFile(w.deps, created('a.dcm'), loc('a.dcm'));
    expect(out.status).toBe('cataloged');
    expect(getProperties).toHaveBeenCalledTimes(1);
  });

  it('given an empty blob, then it fails as not DICOM with a code and a quarantined copy', async () => {
    w.source.put('anq-replica', 'empty.dcm', Buffer.alloc(0));
    const out = await ingestSourceFile(w.deps, created('empty.dcm'), loc('empty.dcm'));
    expect(out.status).not.toBe('cataloged');
    expect(out.errorCode).toMatch(/^DICOM_/);
    expect(w.index.all()[0]!.status).toBe(out.status);
  });

  it('given a burned-in risk under the quarantine policy, then the file is quarantined with the reason', async () => {
    w.deps.burnedIn = { mode: 'quarantine' };
    w.source.put('anq-replica', 'us.dcm', fixture('deid/ultrasounds__GREYSCALE_IMAGE.dcm'));
    const out = await ingestSourceFile(w.deps, created('us.dcm'), loc('us.dcm'));
    expect(out).toEqual({ status: 'quarantined', errorCode: ErrorCodes.DEID_BURNED_IN_ANNOTATION });
    expect(w.quarantine.copies.has('anq-replica/us.dcm')).toBe(true);
  });

  it('given Clean Pixel Data with a region set for the device, then the burned-in text is blacked out and the audit records it', async () => {
    w.deps.burnedIn = { mode: 'quarantine' };
    w.deps.deid = {
      ...w.deps.deid,
      profile: loadProfile({
        name: 'clean-pixels',
        version: '1.0.0',
        options: ['cleanPixelData', 'retainDeviceIdentity'],
        burnedIn: { regions: [{ manufacturer: 'Philips Medical Systems', model: 'EPIQ 5G', boxes: [[0, 0, 1024, 60]] }] },
      }),
    };
    w.source.put('anq-replica', 'us.dcm', fixture('deid/ultrasounds__GREYSCALE_IMAGE.dcm'));
    const out = await ingestSourceFile(w.deps, created('us.dcm'), loc('us.dcm'));
    expect(out.status).toBe('cataloged');
    expect(w.index.all()[0]?.deidentification?.pixelsCleaned).toEqual({ boxes: 1, frames: 1 });
    const copy = await parseDicomBuffer(w.research.blobs.get(researchBlobName(out.research!))!.data);
    expect(asciiValue(copy.dataset.get(0x00280301))).toBe('NO');
  });

  it('given 50 concurrent events for files of one study, then every instance is counted once in the summaries', async () => {
    const base = fixture('pydicom-deb/test_files__MR_small.dcm');
    const parsed = await parseDicomBuffer(base);
    const sop = asciiValue(parsed.dataset.get(Tags.SOPInstanceUID))!;
    const names: string[] = [];
    for (let i = 0; i < 50; i++) {
      // Same study and series; a distinct SOP instance UID of the same length per file.
      const variant = Buffer.from(base);
      const at = variant.indexOf(Buffer.from(sop, 'latin1'), 300);
      const uid = `${sop.slice(0, sop.length - 3)}${String(i).padStart(3, '0')}`;
      variant.write(uid, at, 'latin1');
      const name = `burst/${i}.dcm`;
      w.source.put('anq-replica', name, variant);
      names.push(name);
    }
    const outs = await Promise.all([...names, ...names].map((name) => ingestSourceFile(w.deps, created(name), loc(name))));
    expect(outs.filter((o) => o.status === 'cataloged' || o.status === 'unchanged')).toHaveLength(100);
    expect(w.catalog.instances.docs.size).toBe(50);
    const study = [...w.catalog.studies.values()];
    expect(study).toHaveLength(1);
    expect(study[0]?.numberOfStudyRelatedInstances).toBe(50);
    expect(new Set(w.index.all().map((d) => sourceId(d.sourceUrl))).size).toBe(50);
  });

  it('logs and telemetry carry no identifying value of the source', async () => {
    w.source.put('anq-replica', 'a.dcm', fixture('dcmjs/test__sample-dicom.dcm'));
    await ingestSourceFile(w.deps, created('a.dcm'), loc('a.dcm'));
    const parsed = await parseDicomBuffer(fixture('dcmjs/test__sample-dicom.dcm'));
    const emitted = JSON.stringify({ log: w.log.lines, telemetry: w.telemetry.records, events: w.publisher.events });
    for (const tag of [0x00100010, 0x00100020, 0x00100030, Tags.StudyInstanceUID, Tags.SOPInstanceUID, 0x00080050]) {
      const value = asciiValue(parsed.dataset.get(tag));
      expect(value).toBeTruthy();
      expect(emitted).not.toContain(value);
    }
  });
});
