import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { DicomDataset } from '../../../../shared/dicom/dataset';
import { deidentifyDataset } from '../../../../shared/dicom/deid/engine';
import { basicProfile, defaultProfile } from '../../../../shared/dicom/deid/profile';
import { verifyDeidentified } from '../../../../shared/dicom/deid/verify';
import { parseDicomBuffer } from '../../../../shared/dicom/parser';
import { encodeDataset, encodeFileMeta, encodePixelDataHeader } from '../../../../shared/dicom/writer';
import { text } from './helpers';

const FIXTURES = join(__dirname, '..', '..', '..', 'fixtures', 'dicom');
const FILES = [
  'highdicom/sr_document.dcm',
  'ms-anonymizer/samples__I341.dcm',
  'pydicom-deb/charset_files__chrX1.dcm',
  'pydicom-deb/charset_files__chrH31.dcm',
  'pydicom-deb/test_files__rtstruct.dcm',
  'dcmjs/test__sample-dicom.dcm',
  'deid/ultrasounds__GREYSCALE_IMAGE.dcm',
  'pydicom-deb/test_files__MR_small.dcm',
];
const key = Buffer.from('fixture test key, 32 bytes long..');

async function deidentifyFile(name: string, profile = defaultProfile()) {
  const source = readFileSync(join(FIXTURES, name));
  const parsed = await parseDicomBuffer(source);
  const report = deidentifyDataset(parsed.dataset, { profile, key, keyId: 'fixture' });
  const enc = parsed.encoding;
  const pixel = parsed.pixelData;
  const bytes = Buffer.concat([
    encodeFileMeta(report.original.sopClassUid ?? '', report.research.sopInstanceUid ?? '', parsed.deflated ? '1.2.840.10008.1.2.1' : parsed.transferSyntaxUid),
    encodeDataset(parsed.dataset, enc),
    pixel ? encodePixelDataHeader(pixel.tag, pixel.vr, pixel.length, enc) : Buffer.alloc(0),
    parsed.pixelValue ?? Buffer.alloc(0),
  ]);
  return { parsed, report, bytes, profile };
}

function hasPrivate(ds: DicomDataset): boolean {
  return [...ds.keys()].some((t) => (t >>> 16) % 2 === 1);
}

describe.each(FILES)('de-identifying %s', (name) => {
  it('given the research default, then the written file passes the gate and keeps no source UID or patient ID', async () => {
    const { parsed, report, bytes, profile } = await deidentifyFile(name);
    const result = await verifyDeidentified(bytes, report, profile);
    expect(result.findings).toEqual([]);
    expect(text(parsed.dataset, 'PatientIdentityRemoved')).toBe('YES');
    const latin1 = bytes.toString('latin1');
    expect(latin1).not.toContain(report.original.sopInstanceUid as string);
    if (report.original.studyInstanceUid) expect(latin1).not.toContain(report.original.studyInstanceUid);
    expect(report.research.sopInstanceUid).toMatch(/^2\.25\.\d+$/);
    const reparsed = await parseDicomBuffer(bytes);
    expect(text(reparsed.dataset, 'SOPInstanceUID')).toBe(report.research.sopInstanceUid);
  });

  it('given the Basic profile, then no private attribute is left and the gate passes', async () => {
    const { parsed, report, bytes, profile } = await deidentifyFile(name, basicProfile());
    expect(hasPrivate(parsed.dataset)).toBe(false);
    expect((await verifyDeidentified(bytes, report, profile)).findings).toEqual([]);
  });

  it('given the same file twice, then byte-identical output', async () => {
    const a = await deidentifyFile(name);
    const b = await deidentifyFile(name);
    expect(a.bytes.equals(b.bytes)).toBe(true);
  });
});
