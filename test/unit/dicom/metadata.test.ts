import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { DicomDataset, encodeAsciiValue } from '../../../shared/dicom/dataset';
import { catalogMetadata, datasetToJson, levelOf } from '../../../shared/dicom/metadata';
import { parseDicomBuffer } from '../../../shared/dicom/parser';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');

function text(ds: DicomDataset, tag: number, vr: string, value: string | Buffer) {
  ds.set(tag, { tag, vr, value: typeof value === 'string' ? encodeAsciiValue(value, vr) : value });
}

describe('DICOM JSON of a data set', () => {
  it('given PN with component groups, then Alphabetic, Ideographic and Phonetic', () => {
    const ds: DicomDataset = new Map();
    text(ds, 0x00080005, 'CS', 'ISO_IR 192');
    text(ds, 0x00100010, 'PN', Buffer.from('Yamada^Tarou=山田^太郎=やまだ^たろう', 'utf8'));
    const json = datasetToJson(ds, ['ISO_IR 192'], true);
    expect(json['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' }] });
  });

  it('given numbers in text and binary VRs, then JSON numbers', () => {
    const ds: DicomDataset = new Map();
    text(ds, 0x00280030, 'DS', '0.5\\0.25');
    text(ds, 0x00200013, 'IS', '7');
    const rows = Buffer.alloc(2);
    rows.writeUInt16LE(512);
    ds.set(0x00280010, { tag: 0x00280010, vr: 'US', value: rows });
    const json = datasetToJson(ds, [], true);
    expect(json['00280030']).toEqual({ vr: 'DS', Value: [0.5, 0.25] });
    expect(json['00200013']).toEqual({ vr: 'IS', Value: [7] });
    expect(json['00280010']).toEqual({ vr: 'US', Value: [512] });
  });

  it('given an empty value, then the attribute is present without Value', () => {
    const ds: DicomDataset = new Map();
    text(ds, 0x00080090, 'PN', '');
    expect(datasetToJson(ds, [], true)['00080090']).toEqual({ vr: 'PN' });
  });

  it('given bulk data, then it is left out of the catalog', () => {
    const ds: DicomDataset = new Map();
    ds.set(0x00420011, { tag: 0x00420011, vr: 'OB', value: Buffer.alloc(4096) });
    expect(datasetToJson(ds, [], true)['00420011']).toBeUndefined();
  });

  it('given a Greek file, then text is decoded by its Specific Character Set', async () => {
    const p = await parseDicomBuffer(readFileSync(join(FIXTURES, 'pydicom-deb/charset_files__chrGreek.dcm')));
    const m = catalogMetadata(p.dataset, true);
    expect((m.study['00100010']?.Value?.[0] as { Alphabetic: string }).Alphabetic).toBe('Διονυσιος');
  });

  it('splits attributes by level: study documents hold no series or instance attributes', async () => {
    const p = await parseDicomBuffer(readFileSync(join(FIXTURES, 'pydicom-deb/test_files__MR_small.dcm')));
    const m = catalogMetadata(p.dataset, true);
    expect(Object.keys(m.study).every((k) => ['patient', 'study'].includes(levelOf(parseInt(k, 16))))).toBe(true);
    expect(m.series['00080060']).toEqual({ vr: 'CS', Value: ['MR'] });
    expect(m.study['00080060']).toBeUndefined();
    expect(m.instance['00280010']).toEqual({ vr: 'US', Value: [64] });
    expect(m.modality).toBe('MR');
  });
});
