import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { bufferReader } from '../../../shared/dicom/byteReader';
import { asciiValue, DicomDataset, DicomElement, encodeAsciiValue } from '../../../shared/dicom/dataset';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import { Tags } from '../../../shared/dicom/tags';
import { encodeDataset, encodeFileMeta } from '../../../shared/dicom/writer';
import { ErrorCodes, isPipelineError } from '../../../shared/errors';
import { BurnedInPolicy } from '../../../shared/ingest/burnedIn';
import { prepareDeidentifiedInstance } from '../../../shared/ingest/deidentifyInstance';
import { ingestSourceFile } from '../../../shared/ingest/ingestSourceFile';
import { memoryWorld } from '../fakes';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const key = Buffer.from('document test key, 32 bytes ....');
const ENCAPSULATED_PDF = '1.2.840.10008.5.1.4.1.1.104.1';
const ENCAPSULATED_CDA = '1.2.840.10008.5.1.4.1.1.104.2';
const SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7';

/** A one-page PDF whose text names the patient: what a scanned referral letter carries. */
const PDF = Buffer.from(
  '%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n' +
    '3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Contents 4 0 R>>endobj\n' +
    '4 0 obj<</Length 58>>stream\nBT /F1 12 Tf 72 720 Td (Referral: Smithers, Johnathan) Tj ET\nendstream endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n',
  'latin1',
);
const CDA = Buffer.from('<ClinicalDocument xmlns="urn:hl7-org:v3"><recordTarget><patientRole><patient><name>Johnathan Smithers</name></patient></patientRole></recordTarget></ClinicalDocument>', 'utf8');

function text(keywordTag: number, vr: string, value: string): DicomElement {
  return { tag: keywordTag, vr, value: encodeAsciiValue(value, vr) };
}

/**
 * An encapsulated document built on the patient, study and series modules of a real fixture
 * (pydicom MR_small): the image modules and pixel data go, the document module comes in.
 */
async function documentFrom(sopClassUid: string, mime: string, content: Buffer, burnedIn: 'YES' | 'NO' | undefined): Promise<Buffer> {
  const src = await parseDicomBuffer(readFileSync(join(FIXTURES, 'pydicom-deb/test_files__MR_small.dcm')));
  const ds: DicomDataset = new Map();
  for (const [tag, el] of src.dataset) if (tag < 0x00280000 && !el.items) ds.set(tag, el);
  ds.set(Tags.SOPClassUID, text(Tags.SOPClassUID, 'UI', sopClassUid));
  ds.set(0x00080060, text(0x00080060, 'CS', 'DOC'));
  if (burnedIn) ds.set(0x00280301, text(0x00280301, 'CS', burnedIn));
  ds.set(0x00420010, text(0x00420010, 'ST', 'Referral letter'));
  ds.set(0x00420012, text(0x00420012, 'LO', mime));
  const padded = content.length % 2 ? Buffer.concat([content, Buffer.from([0])]) : content;
  ds.set(0x00420011, { tag: 0x00420011, vr: 'OB', value: padded });
  const sop = asciiValue(ds.get(Tags.SOPInstanceUID)) ?? '';
  return Buffer.concat([encodeFileMeta(sopClassUid, sop, '1.2.840.10008.1.2.1'), encodeDataset(ds, { explicitVR: true, littleEndian: true })]);
}

async function outcome(source: Buffer, burnedIn: BurnedInPolicy = { mode: 'quarantine' }): Promise<string> {
  try {
    const prepared = await prepareDeidentifiedInstance(bufferReader(source), {
      deid: { profile: defaultProfile(), key, keyId: 'test' },
      maxHeaderBytes: 1 << 24,
      totalSize: source.length,
      burnedIn,
    });
    for await (const _ of prepared.output()) void _;
    return 'written';
  } catch (e) {
    if (isPipelineError(e)) return e.code;
    throw e;
  }
}

describe('encapsulated documents are held, never written with zeroed content', () => {
  test('given an encapsulated PDF whose BurnedInAnnotation is NO, then DEID_DOCUMENT_NOT_CLEANED and no output', async () => {
    expect(await outcome(await documentFrom(ENCAPSULATED_PDF, 'application/pdf', PDF, 'NO'))).toBe('DEID_DOCUMENT_NOT_CLEANED');
  });

  test('given an encapsulated PDF whose BurnedInAnnotation is YES, then DEID_DOCUMENT_NOT_CLEANED (the document code, not the pixel one)', async () => {
    expect(await outcome(await documentFrom(ENCAPSULATED_PDF, 'application/pdf', PDF, 'YES'))).toBe('DEID_DOCUMENT_NOT_CLEANED');
  });

  test('given an encapsulated PDF under BURNED_IN_POLICY=allow, then still DEID_DOCUMENT_NOT_CLEANED (the policy is about pixels, not documents)', async () => {
    expect(await outcome(await documentFrom(ENCAPSULATED_PDF, 'application/pdf', PDF, 'NO'), { mode: 'allow' })).toBe('DEID_DOCUMENT_NOT_CLEANED');
  });

  test('given an encapsulated CDA without BurnedInAnnotation, then DEID_DOCUMENT_NOT_CLEANED', async () => {
    expect(await outcome(await documentFrom(ENCAPSULATED_CDA, 'text/XML', CDA, undefined))).toBe('DEID_DOCUMENT_NOT_CLEANED');
  });

  test('given another SOP class carrying an Encapsulated Document (0042,0011), then DEID_DOCUMENT_NOT_CLEANED', async () => {
    expect(await outcome(await documentFrom(SECONDARY_CAPTURE, 'application/pdf', PDF, 'NO'))).toBe('DEID_DOCUMENT_NOT_CLEANED');
  });

  test('given the real MR fixture it was built on, then it is still written (the rule is about documents only)', async () => {
    expect(await outcome(readFileSync(join(FIXTURES, 'pydicom-deb/test_files__MR_small.dcm')))).toBe('written');
  });

  it('given an encapsulated PDF through the ingestion, then it is recorded as quarantined with its code and a quarantine copy, and nothing is written for research', async () => {
    const w = memoryWorld(defaultProfile());
    const loc = { canonicalUrl: 'http://127.0.0.1:10000/devstoreaccount1/anq-replica/letter.dcm', container: 'anq-replica', blobName: 'letter.dcm' };
    w.source.put(loc.container, loc.blobName, await documentFrom(ENCAPSULATED_PDF, 'application/pdf', PDF, 'NO'));
    const out = await ingestSourceFile(w.deps, { kind: 'created', eventId: 'evt-doc', eventType: 'Microsoft.Storage.BlobCreated', url: loc.canonicalUrl }, loc);
    expect(out).toEqual({ status: 'quarantined', errorCode: ErrorCodes.DEID_DOCUMENT_NOT_CLEANED });
    expect(w.quarantine.copies.get(`${loc.container}/${loc.blobName}`)).toEqual({ errorCode: ErrorCodes.DEID_DOCUMENT_NOT_CLEANED });
    expect(w.research.blobs.size).toBe(0);
    expect(w.index.all()[0]).toMatchObject({ status: 'quarantined', errorCode: ErrorCodes.DEID_DOCUMENT_NOT_CLEANED });
  });
});
