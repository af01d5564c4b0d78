/**
 * A summary refresh that fails after the instance document it follows was written or deleted
 * (a lost answer, an outage) must be done by the retry of the event: the retry finds the
 * instance work already done, and must still refresh the series and study summaries, or they
 * stay stale for good (found by the fault suite's lost-answer scenario: an extra series summary
 * and wrong study counts after a source was deleted). Real MR fixture (pydicom MR_small).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { ErrorCodes, PipelineError } from '../../../shared/errors';
import type { IngestRequest, SourceLocation } from '../../../shared/events/ingestEvents';
import { ingestSourceFile } from '../../../shared/ingest/ingestSourceFile';
import { MemoryResearchCatalog, memoryWorld } from '../fakes';

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
