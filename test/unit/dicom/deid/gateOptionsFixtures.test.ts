/**
 * Every fixture through the pipeline core under each Annex E option alone (and under the two
 * built-in profiles): the gate must pass every output, and a simple check of this file's own,
 * sharing no rule with identifying.ts, confirms that the patient's name, ID and birth date,
 * and the source's Study, Series and SOP Instance UIDs unless Retain UIDs keeps them, are gone
 * from the header that would be written. The check follows gateFixtures.test.ts on purpose:
 * an independent check must not borrow the rules it checks.
 */

import { bufferReader } from '../../../../shared/dicom/byteReader';
import { asciiValue, DicomElement } from '../../../../shared/dicom/dataset';
import { deidentifyDataset } from '../../../../shared/dicom/deid/engine';
import { basicProfile, defaultProfile, loadProfile, Profile, PROFILE_OPTIONS, ProfileOption } from '../../../../shared/dicom/deid/profile';
import { verifyDeidentifiedDataset } from '../../../../shared/dicom/deid/verify';
import { ErrorCodes, isPipelineError } from '../../../../shared/errors';
import { prepareDeidentifiedInstance } from '../../../../shared/ingest/deidentifyInstance';
import { el, sampleDataset } from './helpers';
import { Eligible, eligibleFixtures, firstChunk, leaksIn, MAX_HEADER_BYTES, Needle, PATIENT_BIRTH_DATE, PATIENT_NAME } from './leakCheck';

const key = Buffer.from('gate options key, 32 bytes long..');
const UID_NEEDLES = new Set(['StudyInstanceUID', 'SeriesInstanceUID', 'SOPInstanceUID']);

/**
 * The needles an option does not retain. Retain UIDs keeps the source UIDs by definition. Full
 * Dates keeps the study's dates: a birth date that is also one of them is in the output as
 * that date, so only then is it not looked for (the birth date attribute is checked on its own).
 */
function needlesUnder(option: ProfileOption | undefined, f: Eligible): Needle[] {
  return f.needles.filter((n) => {
    if (option === 'retainUids' && UID_NEEDLES.has(n.what)) return false;
    if (option === 'retainLongitudinalFullDates' && n.what === 'PatientBirthDate' && f.otherDates.has(n.value)) return false;
    return true;
  });
}

const cases: [string, ProfileOption | undefined, () => Profile][] = [
  ['research default', undefined, defaultProfile],
  ['basic', undefined, basicProfile],
  ...PROFILE_OPTIONS.map((o): [string, ProfileOption, () => Profile] => [o, o, () => loadProfile({ name: `only-${o}`, version: '1.0.0', options: [o] })]),
];

describe('every fixture through the gate under each option alone', () => {
  let fixtures: Eligible[];

  beforeAll(async () => {
    fixtures = await eligibleFixtures();
  });

  it.each(cases)('given %s, then no file fails verification and none keeps what the option does not retain', async (label, option, makeProfile) => {
    const profile = makeProfile();
    const gateFailures: string[] = [];
    const otherErrors: string[] = [];
    const leaks: string[] = [];
    let checked = 0;
    for (const f of fixtures) {
      try {
        const prepared = await prepareDeidentifiedInstance(bufferReader(f.bytes), {
          deid: { profile, key, keyId: 'gate-options' },
          maxHeaderBytes: MAX_HEADER_BYTES,
          totalSize: f.bytes.length,
          burnedIn: { mode: 'allow' },
        });
        const header = await firstChunk(prepared.output());
        const pseudonym = asciiValue(prepared.dataset.get(PATIENT_NAME)) ?? '';
        for (const what of await leaksIn(header, needlesUnder(option, f), pseudonym)) leaks.push(`${f.name}: ${what}`);
        const birth = asciiValue(prepared.dataset.get(PATIENT_BIRTH_DATE)) ?? '';
        if (birth !== '' && f.needles.some((n) => n.what === 'PatientBirthDate' && n.value === birth)) leaks.push(`${f.name}: PatientBirthDate kept`);
        checked++;
      } catch (e) {
        if (isPipelineError(e) && e.code === ErrorCodes.DEID_VERIFICATION_FAILED) gateFailures.push(`${f.name}: ${e.message}`);
        else otherErrors.push(`${f.name}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    console.log(`gate fixtures, ${label}: ${checked} of ${fixtures.length} eligible files checked`);
    expect(gateFailures).toEqual([]);
    expect(otherErrors).toEqual([]);
    expect(leaks).toEqual([]);
    expect(checked).toBe(fixtures.length);
    expect(checked).toBeGreaterThan(0);
  });
});

describe('what a retain option excuses, and what it does not', () => {
  /** De-identifies the sample with some attributes changed, then sets output attributes and runs the gate. */
  function gate(option: ProfileOption, source: DicomElement[], output: DicomElement[] = []): string[] {
    const profile = loadProfile({ name: `only-${option}`, version: '1.0.0', options: [option] });
    const ds = sampleDataset();
    for (const e of source) ds.set(e.tag, e);
    const report = deidentifyDataset(ds, { profile, key, keyId: 'rules' });
    for (const e of output) ds.set(e.tag, e);
    return verifyDeidentifiedDataset(ds, report, profile).findings;
  }

  it('given Retain Institution Identity and an issuer that is a word of the kept institution name, then excused; a patient ID equal to that word is not', () => {
    expect(gate('retainInstitutionIdentity', [el('IssuerOfPatientID', 'Elsewhere')])).toEqual([]);
    expect(gate('retainInstitutionIdentity', [el('PatientID', 'Elsewhere')])).toEqual([expect.stringMatching(/^\(0008,0080\) InstitutionName: holds an identifying value/)]);
  });

  it('given Retain Full Dates and a birth date equal to the kept study date, then excused; under Retain UIDs the same date in a kept text is a finding', () => {
    expect(gate('retainLongitudinalFullDates', [el('PatientBirthDate', '20210315')])).toEqual([]);
    // In the output: the engine cleans a source value out of an attribute outside Table E.1-1 (issue 11 item 9).
    expect(gate('retainUids', [el('PatientBirthDate', '19700101')], [el('Manufacturer', 'Vendor 19700101')])).toEqual([expect.stringMatching(/^\(0008,0070\) Manufacturer: holds an identifying value/)]);
  });

  it('given Retain UIDs and a kept UID built from the study date and the accession number, then no finding; built from the patient ID, a finding', () => {
    expect(gate('retainUids', [el('AccessionNumber', '7788990'), el('StudyInstanceUID', '1.2.826.0.1.3680043.99.20210315.7788990')])).toEqual([]);
    expect(gate('retainUids', [el('PatientID', '4455667'), el('StudyInstanceUID', '1.2.826.0.1.3680043.99.4455667')])).toEqual([
      expect.stringMatching(/^\(0020,000D\) StudyInstanceUID: holds an identifying value/),
    ]);
  });
});
