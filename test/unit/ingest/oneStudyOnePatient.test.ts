import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { DicomDataset, DicomElement } from '../../../shared/dicom/dataset';
import { defaultProfile, loadProfile, Profile } from '../../../shared/dicom/deid/profile';
import researchDefault from '../../../shared/dicom/deid/profiles/research-default.json';
import { ParsedDicom, parseDicomBuffer } from '../../../shared/dicom/parser';
import { el, tagOf, text } from '../dicom/deid/helpers';
import { deidentifyThroughCore, encodeWithDataset } from './coreHelpers';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const key = Buffer.from('one study one patient key, 32 b.');
const STUDY = '1.2.826.0.1.3680043.99.77.1';

/** One instance of a study, built on the real MR fixture (pydicom MR_small): its own SOP instance, the study's UID, and the given patient elements. */
async function instance(n: number, patient: DicomElement[], drop: string[] = [], study = STUDY): Promise<Buffer> {
  const src = await parseDicomBuffer(readFileSync(join(FIXTURES, 'pydicom-deb/test_files__MR_small.dcm')));
  const ds: DicomDataset = new Map(src.dataset);
  for (const e of [el('StudyInstanceUID', study), el('SeriesInstanceUID', `${study}.1`), el('SOPInstanceUID', `${study}.1.${n}`), el('StudyDate', '20190304'), el('StudyID', '4711'), ...patient]) ds.set(e.tag, e);
  for (const k of drop) ds.delete(tagOf(k));
  return encodeWithDataset(src, ds, `${study}.1.${n}`);
}

async function deidentify(source: Buffer, profile: Profile): Promise<ParsedDicom> {
  return parseDicomBuffer((await deidentifyThroughCore(source, profile, key)).bytes);
}

/** What says "one research patient, one date shift" about an output. */
function researchPatient(p: ParsedDicom) {
  return {
    patientId: text(p.dataset, 'PatientID'),
    patientName: text(p.dataset, 'PatientName'),
    studyDate: text(p.dataset, 'StudyDate'),
    birthDate: text(p.dataset, 'PatientBirthDate'),
    studyId: text(p.dataset, 'StudyID'),
    study: text(p.dataset, 'StudyInstanceUID'),
  };
}

const studyKeyed = () => loadProfile({ ...researchDefault, name: 'research-by-study', researchPatient: 'study' });

describe('one source study maps to one research patient and one date shift', () => {
  test('given three files of one study, with IssuerOfPatientID HOSP-A, HOSP-B and none, under research-default, then one research patient, one shift, one study ID', async () => {
    const files = [
      await instance(1, [el('PatientID', 'MRN4455667'), el('IssuerOfPatientID', 'HOSP-A'), el('PatientBirthDate', '19700101')]),
      await instance(2, [el('PatientID', 'MRN4455667'), el('IssuerOfPatientID', 'HOSP-B'), el('PatientBirthDate', '19700101')]),
      await instance(3, [el('PatientID', 'MRN4455667'), el('PatientBirthDate', '19700101')], ['IssuerOfPatientID']),
    ];
    const outputs = await Promise.all(files.map(async (f) => researchPatient(await deidentify(f, defaultProfile()))));
    expect(new Set(outputs.map((o) => JSON.stringify(o))).size).toBe(1);
    expect(outputs[0]?.patientId).toMatch(/^P[0-9A-Z]{12}$/);
    expect(outputs[0]?.studyDate).not.toBe('20190304');
  });

  test('given one patient\'s two studies under research-default, then one research patient and one shift across them (longitudinal)', async () => {
    const a = researchPatient(await deidentify(await instance(1, [el('PatientID', 'MRN4455667'), el('IssuerOfPatientID', 'HOSP-A')]), defaultProfile()));
    const b = researchPatient(await deidentify(await instance(1, [el('PatientID', 'MRN4455667')], ['IssuerOfPatientID'], '1.2.826.0.1.3680043.99.78.1'), defaultProfile()));
    expect(b.patientId).toBe(a.patientId);
    expect(b.studyDate).toBe(a.studyDate);
    expect(b.study).not.toBe(a.study);
  });

  test('given files of one study whose Patient IDs differ (MRN4455667, 4455667) under researchPatient "study", then one research patient and one shift', async () => {
    const files = [
      await instance(1, [el('PatientID', 'MRN4455667'), el('IssuerOfPatientID', 'HOSP-A')]),
      await instance(2, [el('PatientID', '4455667')], ['IssuerOfPatientID']),
    ];
    const outputs = await Promise.all(files.map(async (f) => researchPatient(await deidentify(f, studyKeyed()))));
    expect(outputs[1]).toEqual(outputs[0]);
  });

  test('given one patient\'s two studies under researchPatient "study", then two research patients (the trade-off: no link between studies)', async () => {
    const a = researchPatient(await deidentify(await instance(1, [el('PatientID', 'MRN4455667')]), studyKeyed()));
    const b = researchPatient(await deidentify(await instance(1, [el('PatientID', 'MRN4455667')], [], '1.2.826.0.1.3680043.99.78.1'), studyKeyed()));
    expect(b.patientId).not.toBe(a.patientId);
  });
});
