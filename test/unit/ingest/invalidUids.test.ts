import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { asciiValue } from '../../../shared/dicom/dataset';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import { ErrorCodes } from '../../../shared/errors';
import type { SourceLocation } from '../../../shared/events/ingestEvents';
import { ingestSourceFile, isValidUid } from '../../../shared/ingest/ingestSourceFile';
import { memoryWorld } from '../fakes';

const FIXTURE = readFileSync(join(__dirname, '..', '..', 'fixtures', 'dicom', 'pydicom-deb', 'test_files__MR_small.dcm'));
const LOC: SourceLocation = { canonicalUrl: 'http://127.0.0.1:10000/devstoreaccount1/anq-replica/bad-uid.dcm', container: 'anq-replica', blobName: 'bad-uid.dcm' };

/** The fixture with one character of a UID (every occurrence) replaced, keeping its length. */
async function withUidCharacter(tag: number, position: number, character: string): Promise<Buffer> {
  const uid = asciiValue((await parseDicomBuffer(FIXTURE)).dataset.get(tag))!;
  const out = Buffer.from(FIXTURE);
  const bad = Buffer.from(uid, 'latin1');
  bad[position] = character.charCodeAt(0);
  for (let at = out.indexOf(uid); at >= 0; at = out.indexOf(uid, at + 1)) bad.copy(out, at);
  return out;
}

describe('source UIDs', () => {
  it.each([
    ['a SOP Instance UID with a backslash (two values)', 0x00080018, '\\'],
    ['a Study Instance UID with a stray byte', 0x0020000d, '\u00e9'],
    ['a Series Instance UID with a letter', 0x0020000e, 'x'],
  ])('given %s, then the file is quarantined as DICOM_INVALID_UID and nothing reaches the research side', async (_label, tag, character) => {
    const w = memoryWorld(defaultProfile());
    w.source.put(LOC.container, LOC.blobName, await withUidCharacter(tag, 5, character));
    const out = await ingestSourceFile(w.deps, { kind: 'created', eventId: 'evt-1', eventType: 'Microsoft.Storage.BlobCreated', url: LOC.canonicalUrl }, LOC);
    expect(out).toEqual({ status: 'quarantined', errorCode: ErrorCodes.DICOM_INVALID_UID });
    expect(w.research.blobs.size).toBe(0);
    expect(w.catalog.instances.docs.size).toBe(0);
    expect(w.quarantine.copies.get(`${LOC.container}/${LOC.blobName}`)).toEqual({ errorCode: ErrorCodes.DICOM_INVALID_UID });
    const record = w.index.all()[0]!;
    expect(record).toMatchObject({ status: 'quarantined', errorCode: ErrorCodes.DICOM_INVALID_UID });
    expect(record.errorMessage).toMatch(/not a valid UID/);
  });

  it.each([
    ['1.2.840.10008.5.1.4.1.1.4', true],
    ['2.25.329800735698586629295641978511506172918', true],
    ['1.2.040.1', true],
    ['1.2.3\\1.2.4', false],
    ['1..2', false],
    ['1.2.', false],
    ['', false],
    [`1.${'2'.repeat(63)}`, false],
  ])('isValidUid(%j) is %s', (uid, valid) => {
    expect(isValidUid(uid)).toBe(valid);
  });
});
