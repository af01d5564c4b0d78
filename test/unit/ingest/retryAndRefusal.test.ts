/**
 * A summary refresh that fails after the instance document it follows was written or deleted
 * (a lost answer, an outage) must be done by the retry of the event: the retry finds the
 * instance work already done, and must still refresh the series and study summaries, or they
 * stay stale for good (found by the fault suite's lost-answer scenario: an extra series summary
 * and wrong study counts after a source was deleted). And an output the verification gate
 * refuses is recorded with its de-identification audit (a result of the preparation, not data
 * attached to a thrown error). Real MR fixture (pydicom MR_small).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { asciiValue, DicomDataset } from '../../../shared/dicom/dataset';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import { Tags } from '../../../shared/dicom/tags';
import { ErrorCodes, PipelineError } from '../../../shared/errors';
import type { IngestRequest, SourceLocation } from '../../../shared/events/ingestEvents';
import { ingestSourceFile } from '../../../shared/ingest/ingestSourceFile';
import { MemoryResearchCatalog, memoryWorld } from '../fakes';
import { encodeWithDataset } from './coreHelpers';

const FIXTURE = join(__dirname, '..', '..', 'fixtures', 'dicom', 'pydicom-deb', 'test_files__MR_small.dcm');
const ENDPOINT = 'http://127.0.0.1:10000/devstoreaccount1';
const loc = (name: string): SourceLocation => ({ canonicalUrl: `${ENDPOINT}/anq-replica/${name}`, container: 'anq-replica', blobName: name });
let n = 0;
const request = (kind: 'created' | 'deleted', name: string): IngestRequest => ({
  kind,
  eventId: `evt-${++n}`,
  eventType: kind === 'created' ? 'Microsoft.Storage.BlobCreated' : 'Microsoft.Storage.BlobDeleted',
  url: loc(name).canonicalUrl,
});

/** The next summary refresh fails once, after the instance change it follows took effect. */
function failNextRefresh(catalog: MemoryResearchCatalog): () => number {
  const refresh = catalog.refreshSummaries.bind(catalog);
  let failures = 1;
  let calls = 0;
  catalog.refreshSummaries = async (study, series) => {
    calls++;
    if (failures-- > 0) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'writing the series summary: service error (ECONNRESET)');
    return refresh(study, series);
  };
  return () => calls;
}

describe('a summary refresh that failed after the instance change', () => {
  it('given a deletion whose summary refresh failed, when the event is retried, then the series and study summaries are gone', async () => {
    const w = memoryWorld(defaultProfile());
    w.source.put('anq-replica', 'a.dcm', readFileSync(FIXTURE));
    const first = await ingestSourceFile(w.deps, request('created', 'a.dcm'), loc('a.dcm'));
    const study = first.research!.studyInstanceUid;
    expect(w.catalog.studies.has(study)).toBe(true);
    w.source.delete('anq-replica', 'a.dcm');
    const calls = failNextRefresh(w.catalog);
    const deletion = request('deleted', 'a.dcm');
    await expect(ingestSourceFile(w.deps, deletion, loc('a.dcm'))).rejects.toThrow(/summary/);
    expect(w.catalog.instances.docs.size).toBe(0);
    await ingestSourceFile(w.deps, deletion, loc('a.dcm'));
    expect(calls()).toBeGreaterThanOrEqual(2);
    expect([...w.catalog.series.keys()]).toEqual([]);
    expect(w.catalog.studies.has(study)).toBe(false);
  });

  it('given an ingestion whose summary refresh failed, when the event is retried, then the series and study summaries count the instance', async () => {
    const w = memoryWorld(defaultProfile());
    w.source.put('anq-replica', 'a.dcm', readFileSync(FIXTURE));
    failNextRefresh(w.catalog);
    const creation = request('created', 'a.dcm');
    await expect(ingestSourceFile(w.deps, creation, loc('a.dcm'))).rejects.toThrow(/summary/);
    expect(w.catalog.instances.docs.size).toBe(1);
    const retried = await ingestSourceFile(w.deps, creation, loc('a.dcm'));
    const study = retried.research?.studyInstanceUid ?? [...w.catalog.instances.docs.values()][0]!.doc.studyInstanceUid;
    expect(w.catalog.studies.get(study)?.numberOfStudyRelatedInstances).toBe(1);
    expect(w.catalog.series.size).toBe(1);
  });
});

describe('a version withdrawn because its source was deleted', () => {
  it('given the source deleted while it was ingested (after its summaries, before its record), when the delete event comes, then nothing is left on the research side', async () => {
    const w = memoryWorld(defaultProfile());
    w.source.put('anq-replica', 'a.dcm', readFileSync(FIXTURE));
    const refresh = w.catalog.refreshSummaries.bind(w.catalog);
    let calls = 0;
    w.catalog.refreshSummaries = async (study, series) => {
      calls++;
      await refresh(study, series);
      if (calls === 1) w.source.delete('anq-replica', 'a.dcm');
    };
    // The first record is created without reading the blob again: the delete event sorts it out.
    await ingestSourceFile(w.deps, request('created', 'a.dcm'), loc('a.dcm'));
    expect((await ingestSourceFile(w.deps, request('deleted', 'a.dcm'), loc('a.dcm'))).status).toBe('deleted');
    expect(w.catalog.instances.docs.size).toBe(0);
    expect(w.catalog.series.size).toBe(0);
    expect(w.catalog.studies.size).toBe(0);
    expect(w.research.blobs.size).toBe(0);
    expect(w.index.all()).toEqual([expect.objectContaining({ status: 'deleted' })]);
  });

  it('given the withdrawal\'s summary refresh failed (a lost answer), when the delete event is retried, then the series and study summaries are gone', async () => {
    const w = memoryWorld(defaultProfile());
    w.source.put('anq-replica', 'a.dcm', readFileSync(FIXTURE));
    await ingestSourceFile(w.deps, request('created', 'a.dcm'), loc('a.dcm'));
    w.source.delete('anq-replica', 'a.dcm');
    const refresh = w.catalog.refreshSummaries.bind(w.catalog);
    let calls = 0;
    w.catalog.refreshSummaries = async (study, series) => {
      calls++;
      // The withdrawal's refresh, after the instance document was deleted: its answer is lost.
      if (calls === 1) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'writing the series summary: service error (ECONNRESET)');
      return refresh(study, series);
    };
    const deletion = request('deleted', 'a.dcm');
    await expect(ingestSourceFile(w.deps, deletion, loc('a.dcm'))).rejects.toThrow(/summary/);
    expect(w.catalog.instances.docs.size).toBe(0);
    expect(w.catalog.series.size).toBe(1);
    await ingestSourceFile(w.deps, deletion, loc('a.dcm'));
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(w.catalog.series.size).toBe(0);
    expect(w.catalog.studies.size).toBe(0);
    expect(w.research.blobs.size).toBe(0);
  });
});

describe('an output the verification gate refuses', () => {
  it('given the patient name written into opaque binary data the profile keeps, then the file is quarantined DEID_VERIFICATION_FAILED and its record keeps the de-identification audit (gate failed), with no research copy', async () => {
    const src = await parseDicomBuffer(readFileSync(FIXTURE));
    const ds: DicomDataset = new Map(src.dataset);
    const familyName = (asciiValue(ds.get(Tags.PatientName)) ?? '').split('^')[0] ?? '';
    expect(familyName.length).toBeGreaterThan(8);
    // Palette lookup table data (OW) is kept as it is; these bytes spell the patient's family name.
    ds.set(Tags.RedPaletteColorLookupTableData, { tag: Tags.RedPaletteColorLookupTableData, vr: 'OW', value: Buffer.from(`${familyName} `.padEnd(32, ' ')) });
    const w = memoryWorld(defaultProfile());
    w.source.put('anq-replica', 'a.dcm', encodeWithDataset(src, ds));
    const out = await ingestSourceFile(w.deps, request('created', 'a.dcm'), loc('a.dcm'));
    expect(out).toMatchObject({ status: 'quarantined', errorCode: ErrorCodes.DEID_VERIFICATION_FAILED });
    const record = w.index.all()[0]!;
    expect(record.deidentification).toMatchObject({ profile: defaultProfile().name, gate: 'failed', keyId: 'k-test' });
    expect(record.deidentification?.actions.replacedUid).toBeGreaterThan(0);
    expect(w.research.blobs.size).toBe(0);
  });
});
