/**
 * Re-index (issue 18): a version cataloged under another key id or profile has its research
 * side re-created under the current ones, and the old copy and documents withdrawn, with the
 * exactly-once behaviour of the rest of ingestion under redelivery and races.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { IndexStore } from '../../../shared/catalog/catalogStore';
import { defaultProfile, loadProfile } from '../../../shared/dicom/deid/profile';
import researchDefault from '../../../shared/dicom/deid/profiles/research-default.json';
import { ErrorCodes, PipelineError } from '../../../shared/errors';
import type { IngestRequest, SourceLocation } from '../../../shared/events/ingestEvents';
import { isCurrentGeneration, needsReindex } from '../../../shared/ingest/generation';
import { ingestSourceFile, researchBlobName } from '../../../shared/ingest/ingestSourceFile';
import { MemoryWorld, memoryWorld } from '../fakes';

const FIXTURE = readFileSync(join(__dirname, '..', '..', 'fixtures', 'dicom', 'pydicom-deb', 'test_files__MR_small.dcm'));
const ENDPOINT = 'http://127.0.0.1:10000/devstoreaccount1';
const NAME = 'site-a/mr.dcm';
const LOC: SourceLocation = { canonicalUrl: `${ENDPOINT}/anq-replica/${encodeURIComponent(NAME)}`, container: 'anq-replica', blobName: NAME };
const KEY_1 = Buffer.from('reindex-test-key-one-0123456789abcdef');
const KEY_2 = Buffer.from('reindex-test-key-two-0123456789abcdef');

let n = 0;
const created = (): IngestRequest => ({ kind: 'created', eventId: `evt-${++n}`, eventType: 'Microsoft.Storage.BlobCreated', url: LOC.canonicalUrl });
const deleted = (): IngestRequest => ({ kind: 'deleted', eventId: `evt-${++n}`, eventType: 'Microsoft.Storage.BlobDeleted', url: LOC.canonicalUrl });

function rotate(w: MemoryWorld): void {
  w.deps.deid = { ...w.deps.deid, key: KEY_2, keyId: 'k2' };
}

/** The research side holds exactly `sop`'s copy and document (or nothing), with summaries that count it once. */
function expectResearchSide(w: MemoryWorld, research: { studyInstanceUid: string; seriesInstanceUid: string; sopInstanceUid: string } | undefined): void {
  if (!research) {
    expect(w.research.blobs.size).toBe(0);
    expect(w.catalog.instances.docs.size).toBe(0);
    expect(w.catalog.studies.size).toBe(0);
    return;
  }
  expect([...w.research.blobs.keys()].filter((b) => !b.endsWith('.frames'))).toEqual([researchBlobName(research)]);
  expect([...w.catalog.instances.docs.values()].map((v) => v.doc.sopInstanceUid)).toEqual([research.sopInstanceUid]);
  expect([...w.catalog.studies.keys()]).toEqual([research.studyInstanceUid]);
  expect(w.catalog.studies.get(research.studyInstanceUid)?.numberOfStudyRelatedInstances).toBe(1);
}

describe('re-index under a new key or profile', () => {
  let w: MemoryWorld;
  beforeEach(() => {
    w = memoryWorld(defaultProfile(), KEY_1);
    w.deps.deid = { ...w.deps.deid, keyId: 'k1' };
    w.source.put('anq-replica', NAME, FIXTURE);
  });

  it('given a version cataloged under the current key and profile, then a new event is skipped without reading the file or writing anything', async () => {
    const first = await ingestSourceFile(w.deps, created(), LOC);
    expect(first.status).toBe('cataloged');
    const reads = w.source.reads;
    const record = w.index.map.get(w.index.all()[0]!.id)!;
    const copies = [...w.research.blobs.values()].map((b) => b.version.etag);

    expect((await ingestSourceFile(w.deps, created(), LOC)).status).toBe('unchanged');
    expect(w.source.reads).toBe(reads);
    expect(w.index.map.get(record.doc.id)!.etag).toBe(record.etag);
    expect([...w.research.blobs.values()].map((b) => b.version.etag)).toEqual(copies);
    expect(w.publisher.events).toHaveLength(1);
    expect(w.publisher.withdrawals).toHaveLength(0);
    expect(record.doc.deidentification).toMatchObject({ keyId: 'k1', profile: 'research-default', profileDigest: defaultProfile().digest });
  });

  it('given a version cataloged under another key id, then its research side is re-created under the current key and the old copy and documents withdrawn and announced', async () => {
    const old = (await ingestSourceFile(w.deps, created(), LOC)).research!;
    rotate(w);
    const out = await ingestSourceFile(w.deps, created(), LOC);

    expect(out.status).toBe('cataloged');
    const now = out.research!;
    expect(now.studyInstanceUid).not.toBe(old.studyInstanceUid);
    expect(now.seriesInstanceUid).not.toBe(old.seriesInstanceUid);
    expect(now.sopInstanceUid).not.toBe(old.sopInstanceUid);
    expectResearchSide(w, now);
    const record = w.index.all()[0]!;
    expect(record.status).toBe('cataloged');
    expect(record.research).toEqual({ ...now, blob: researchBlobName(now) });
    expect(record.deidentification?.keyId).toBe('k2');
    expect(w.catalog.instances.docs.values().next().value?.doc.deidentification.keyId).toBe('k2');
    expect(w.publisher.withdrawals.map((e) => e.data)).toEqual([{ studyInstanceUid: old.studyInstanceUid, seriesInstanceUid: old.seriesInstanceUid, sopInstanceUid: old.sopInstanceUid }]);
    expect(w.publisher.events.map((e) => e.data.sopInstanceUid)).toEqual([old.sopInstanceUid, now.sopInstanceUid]);
    // Two announcements of the same source version, told apart by their ids.
    expect(new Set(w.publisher.events.map((e) => e.id)).size).toBe(2);

    // Done: the next event is skipped.
    expect((await ingestSourceFile(w.deps, created(), LOC)).status).toBe('unchanged');
    expect(w.publisher.events).toHaveLength(2);
  });

  it('given a re-index that fails after withdrawing the old instance and before recording the new one, then its redelivery ends in the state one delivery reaches, with the same announcements', async () => {
    await ingestSourceFile(w.deps, created(), LOC);
    rotate(w);
    const put = w.index.put.bind(w.index);
    let failures = 1;
    w.index.put = (async (doc, tag) => {
      if (failures > 0 && doc.deidentification?.keyId === 'k2') {
        failures--;
        throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'Cosmos DB answered 503');
      }
      return put(doc, tag);
    }) as IndexStore['put'];

    await expect(ingestSourceFile(w.deps, created(), LOC)).rejects.toThrow(/503/);
    // The record still names the old instance, which is gone already: the redelivery is not skipped.
    expect(w.index.all()[0]!.deidentification?.keyId).toBe('k1');
    const again = await ingestSourceFile(w.deps, created(), LOC);

    expect(again.status).toBe('cataloged');
    expectResearchSide(w, again.research);
    expect(w.index.all()[0]!.deidentification?.keyId).toBe('k2');
    // The withdrawal announced twice with one id (a consumer sees one event), the new instance once.
    expect(new Set(w.publisher.withdrawals.map((e) => e.id)).size).toBe(1);
    expect(w.publisher.events.filter((e) => e.data.sopInstanceUid === again.research!.sopInstanceUid)).toHaveLength(1);
  });

  it('given two deliveries of the re-index at once, then one new instance, no old one, and one record under the new key', async () => {
    await ingestSourceFile(w.deps, created(), LOC);
    rotate(w);
    const outs = await Promise.all([ingestSourceFile(w.deps, created(), LOC), ingestSourceFile(w.deps, created(), LOC)]);

    const research = outs.find((o) => o.research)?.research;
    expect(research).toBeDefined();
    for (const o of outs) expect(['cataloged', 'unchanged']).toContain(o.status);
    expectResearchSide(w, research);
    expect(w.index.all()).toHaveLength(1);
    expect(w.index.all()[0]!.deidentification?.keyId).toBe('k2');
    expect(new Set(w.publisher.events.filter((e) => e.data.sopInstanceUid === research!.sopInstanceUid).map((e) => e.id)).size).toBe(1);
  });

  it('given a new profile under the same key, then the copy is re-created in place (same research UIDs) with the new profile recorded, and nothing is withdrawn', async () => {
    const old = (await ingestSourceFile(w.deps, created(), LOC)).research!;
    const before = w.research.blobs.get(researchBlobName(old))!.data;
    // The same name and version, other rules: only the digest tells them apart.
    const changed = loadProfile({ ...researchDefault, overrides: { ...(researchDefault as { overrides?: object }).overrides, ManufacturerModelName: { action: 'replace', value: 'REINDEXED' } } });
    expect(changed.version).toBe(defaultProfile().version);
    expect(changed.digest).not.toBe(defaultProfile().digest);
    w.deps.deid = { ...w.deps.deid, profile: changed };

    const out = await ingestSourceFile(w.deps, created(), LOC);
    expect(out.status).toBe('cataloged');
    expect(out.research).toEqual(old);
    expectResearchSide(w, old);
    expect(w.research.blobs.get(researchBlobName(old))!.data.equals(before)).toBe(false);
    expect(w.research.blobs.get(researchBlobName(old))!.data.includes(Buffer.from('REINDEXED'))).toBe(true);
    expect(w.index.all()[0]!.deidentification?.profileDigest).toBe(changed.digest);
    expect(w.publisher.withdrawals).toHaveLength(0);
    expect(w.publisher.events).toHaveLength(2);
  });

  it('given a source deleted after a key rotation, then its instance made under the old key is withdrawn', async () => {
    const old = (await ingestSourceFile(w.deps, created(), LOC)).research!;
    rotate(w);
    w.source.delete('anq-replica', NAME);
    expect((await ingestSourceFile(w.deps, deleted(), LOC)).status).toBe('deleted');
    expectResearchSide(w, undefined);
    expect(w.publisher.withdrawals.map((e) => e.data.sopInstanceUid)).toEqual([old.sopInstanceUid]);
  });

  it('given a source changed after a key rotation, then the old key\'s instance goes and the new version is cataloged under the new key', async () => {
    await ingestSourceFile(w.deps, created(), LOC);
    rotate(w);
    const variant = Buffer.from(FIXTURE);
    variant.write('X', variant.length - 1, 'latin1');
    w.source.put('anq-replica', NAME, variant, new Date(Date.now() + 2000));
    const out = await ingestSourceFile(w.deps, created(), LOC);
    expect(out.status).toBe('cataloged');
    expectResearchSide(w, out.research);
  });

  it('given a record under another key that is failed or quarantined, then it is not re-ingested (no research side to re-create)', async () => {
    w.source.put('anq-replica', NAME, Buffer.from('not a DICOM file at all, only text'));
    expect((await ingestSourceFile(w.deps, created(), LOC)).status).toBe('failed');
    rotate(w);
    expect((await ingestSourceFile(w.deps, created(), LOC)).status).toBe('unchanged');
  });
});

describe('generations', () => {
  const current = { keyId: 'k2', profile: 'research-default', profileVersion: '1.0.0', profileDigest: 'aaaa' };

  it('given the same key, profile and digest, then current; another key, name, version or digest, then not', () => {
    expect(isCurrentGeneration({ ...current, actions: {}, gate: 'passed' }, current)).toBe(true);
    expect(isCurrentGeneration({ ...current, keyId: 'k1', actions: {}, gate: 'passed' }, current)).toBe(false);
    expect(isCurrentGeneration({ ...current, profile: 'basic', actions: {}, gate: 'passed' }, current)).toBe(false);
    expect(isCurrentGeneration({ ...current, profileVersion: '1.0.1', actions: {}, gate: 'passed' }, current)).toBe(false);
    expect(isCurrentGeneration({ ...current, profileDigest: 'bbbb', actions: {}, gate: 'passed' }, current)).toBe(false);
  });

  it('given a record written before digests were recorded, then it is compared by name and version only', () => {
    const { profileDigest: _d, ...older } = current;
    expect(isCurrentGeneration({ ...older, actions: {}, gate: 'passed' }, current)).toBe(true);
  });

  it('given a cataloged record of another key, then it needs a re-index; failed, quarantined and deleted ones do not', () => {
    const deidentification = { ...current, keyId: 'k1', actions: {}, gate: 'passed' as const };
    expect(needsReindex({ status: 'cataloged', deidentification }, current)).toBe(true);
    for (const status of ['failed', 'quarantined', 'deleted'] as const) expect(needsReindex({ status, deidentification }, current)).toBe(false);
  });

  it('given the same profile data in another key order or with another description, then the same digest; another rule, then another digest', () => {
    const reordered = Object.fromEntries(Object.entries(researchDefault).reverse());
    expect(loadProfile(reordered).digest).toBe(defaultProfile().digest);
    expect(loadProfile({ ...researchDefault, description: 'reworded' }).digest).toBe(defaultProfile().digest);
    expect(loadProfile({ ...researchDefault, agesOver89: 'keep' }).digest).not.toBe(defaultProfile().digest);
  });
});
