/**
 * The gate's rules, each shown on a small case, and the independent leak check tried on an
 * unprocessed file. Every fixture under both built-in profiles and under each option alone
 * runs in gateOptionsFixtures.test.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { DicomElement } from '../../../../shared/dicom/dataset';
import { deidentifyDataset } from '../../../../shared/dicom/deid/engine';
import { valueMatcher } from '../../../../shared/dicom/deid/identifying';
import { basicProfile, defaultProfile } from '../../../../shared/dicom/deid/profile';
import { resolveAction } from '../../../../shared/dicom/deid/resolve';
import { verifyDeidentifiedDataset } from '../../../../shared/dicom/deid/verify';
import { parseDicomBuffer } from '../../../../shared/dicom/parser';
import { dataset, el, sampleDataset, seq, tagOf } from './helpers';
import { FIXTURES, leaksIn, needlesOf } from './leakCheck';

const key = Buffer.from('gate fixture key, 32 bytes long.');

describe('the rules behind the fixture results', () => {
  /** De-identifies the sample with some attributes changed, then sets output attributes and runs the gate. */
  function gate(source: DicomElement[], output: DicomElement[] = [], profile = defaultProfile()): string[] {
    const ds = sampleDataset();
    for (const e of source) ds.set(e.tag, e);
    const report = deidentifyDataset(ds, { profile, key, keyId: 'rules' });
    for (const e of output) ds.set(e.tag, e);
    return verifyDeidentifiedDataset(ds, report, profile).findings;
  }

  it('given a numeric patient ID equal to a kept Series Number, then no finding; in a kept text, a finding', () => {
    expect(gate([el('PatientID', '123456'), el('StudyID', '123456'), el('SeriesNumber', '123456')])).toEqual([]);
    expect(gate([el('PatientID', '123456')], [el('Manufacturer', 'Vendor 123456')])).toEqual([expect.stringMatching(/^\(0008,0070\) Manufacturer: holds an identifying value/)]);
  });

  it('given a placeholder name component in kept device values, then no finding; the whole name still is one', () => {
    // A fresh element each time: the engine changes its input in place.
    const name = () => el('PatientName', 'Test^Patient');
    expect(gate([name(), el('Manufacturer', 'Test Manufacturer'), el('ManufacturerModelName', 'Test Model')])).toEqual([]);
    expect(gate([name()], [el('Manufacturer', 'Test Patient')])).toEqual([expect.stringMatching(/^\(0008,0070\) Manufacturer: holds an identifying value/)]);
  });

  it('given a staff name that a kept attribute also holds, then excused; the patient surname never is', () => {
    expect(gate([el('ContentCreatorName', 'QIICR'), el('Manufacturer', 'https://github.com/QIICR/Slicer')])).toEqual([]);
    // In the output: the engine cleans a source value out of an attribute outside Table E.1-1 (issue 11 item 9).
    expect(gate([], [el('Manufacturer', 'Smithers Medical')])).toEqual([expect.stringMatching(/^\(0008,0070\) Manufacturer: holds an identifying value/)]);
  });

  it('given a coding scheme UID inside a removed sequence and in kept codes, then not identifying', () => {
    const code = () => dataset(el('CodeValue', '1'), el('CodingSchemeDesignator', '99_LOCAL'), el('CodingSchemeUID', '1.2.276.0.7230010.3.0.0.1'), el('CodeMeaning', 'x'));
    const observer = seq('VerifyingObserverSequence', [dataset(el('VerifyingObserverName', 'Observer^Vera'), seq('VerifyingObserverIdentificationCodeSequence', [code()]))]);
    expect(gate([observer, seq('ConceptNameCodeSequence', [code()])])).toEqual([]);
  });

  it('given a short UID, then it matches only as a whole UID', () => {
    expect(valueMatcher('1.1').test('1.2.840.10008.5.1.4.1.1.6.1')).toBe(false);
    expect(valueMatcher('1.1').test('see 1.1.')).toBe(true);
  });

  it('given the issuer sequences of the accession number and patient ID, then both profiles remove them', () => {
    for (const profile of [defaultProfile(), basicProfile()]) {
      expect(resolveAction(tagOf('IssuerOfAccessionNumberSequence'), profile).action).toBe('remove');
      expect(resolveAction(tagOf('IssuerOfPatientIDQualifiersSequence'), profile).action).toBe('remove');
    }
  });

  it('given the check of this file on an identified header, then it sees the patient and the UIDs', async () => {
    const bytes = readFileSync(join(FIXTURES, 'pydicom-deb', 'test_files__MR_small.dcm'));
    const source = await parseDicomBuffer(bytes);
    const found = await leaksIn(bytes, needlesOf(source.dataset), '');
    expect(found).toEqual(expect.arrayContaining(['PatientName', 'PatientID', 'StudyInstanceUID', 'SeriesInstanceUID', 'SOPInstanceUID']));
  });
});
