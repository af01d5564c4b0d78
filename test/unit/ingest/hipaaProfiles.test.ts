import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { DicomDataset, DicomElement } from '../../../shared/dicom/dataset';
import { BUILT_IN_PROFILE_NAMES, builtInProfile, Profile } from '../../../shared/dicom/deid/profile';
import { ParsedDicom, parseDicomBuffer } from '../../../shared/dicom/parser';
import { loadDeidProfile } from '../../../shared/runtime';
import { el, tagOf, text } from '../dicom/deid/helpers';
import { deidentifyThroughCore, encodeWithDataset } from './coreHelpers';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const key = Buffer.from('hipaa profile test key, 32 bytes');

function profile(name: string): Profile {
  const p = builtInProfile(name);
  if (!p) throw new Error(`no built-in profile ${name}`);
  return p;
}

/** The real MR fixture (pydicom MR_small) with `planted` elements set over its own, written back as a Part 10 file. */
async function plantedFixture(planted: DicomElement[], drop: string[] = []): Promise<Buffer> {
  const src = await parseDicomBuffer(readFileSync(join(FIXTURES, 'pydicom-deb/test_files__MR_small.dcm')));
  const ds: DicomDataset = new Map(src.dataset);
  for (const e of planted) ds.set(e.tag, e);
  for (const k of drop) ds.delete(tagOf(k));
  return encodeWithDataset(src, ds);
}

async function deidentify(source: Buffer, p: Profile): Promise<{ bytes: Buffer; parsed: ParsedDicom }> {
  const { bytes } = await deidentifyThroughCore(source, p, key);
  return { bytes, parsed: await parseDicomBuffer(bytes) };
}

const AGED_95 = [el('PatientAge', '095Y'), el('PatientBirthDate', '19240110'), el('StudyDate', '20190304'), el('SeriesDate', '20190304')];

describe('ages over 89 are aggregated in every profile but the limited data set', () => {
  test.each([
    ['research-default', '090Y'],
    ['safe-harbor', '090Y'],
  ])('given a 95-year-old in the real MR fixture under %s, then PatientAge is %s and no birth date is left', async (name, age) => {
    const { parsed } = await deidentify(await plantedFixture(AGED_95), profile(name));
    expect(text(parsed.dataset, 'PatientAge')).toBe(age);
    expect(text(parsed.dataset, 'PatientBirthDate') ?? '').toBe('');
  });

  test('given a 95-year-old under basic, then no PatientAge and no birth date at all', async () => {
    const { parsed } = await deidentify(await plantedFixture(AGED_95), profile('basic'));
    expect(text(parsed.dataset, 'PatientAge')).toBeUndefined();
    expect(text(parsed.dataset, 'PatientBirthDate') ?? '').toBe('');
  });

  test('given a 95-year-old under limited-data-set, then the age and the birth date stay exact', async () => {
    const { parsed } = await deidentify(await plantedFixture(AGED_95), profile('limited-data-set'));
    expect(text(parsed.dataset, 'PatientAge')).toBe('095Y');
    expect(text(parsed.dataset, 'PatientBirthDate')).toBe('19240110');
  });

  test('given an age shown only by the birth date (95 at the study, no PatientAge) under research-default, then the shifted birth date is not written', async () => {
    const { parsed } = await deidentify(await plantedFixture([el('PatientBirthDate', '19240110'), el('StudyDate', '20190304')], ['PatientAge']), profile('research-default'));
    expect(text(parsed.dataset, 'PatientBirthDate') ?? '').toBe('');
  });

  test('given 089Y (89 years) under research-default, then the age stays and the birth date is shifted, not emptied', async () => {
    const { parsed } = await deidentify(await plantedFixture([el('PatientAge', '089Y'), el('PatientBirthDate', '19300110'), el('StudyDate', '20190304')]), profile('research-default'));
    expect(text(parsed.dataset, 'PatientAge')).toBe('089Y');
    expect(text(parsed.dataset, 'PatientBirthDate')).toMatch(/^\d{8}$/);
    expect(text(parsed.dataset, 'PatientBirthDate')).not.toBe('19300110');
  });
});

describe('safe-harbor: dates to the year, geography below the state removed', () => {
  test('given the real MR fixture with dates, times and residence, then DA keeps YYYY0101, DT keeps YYYY, times and sub-state geography go', async () => {
    const { parsed } = await deidentify(
      await plantedFixture([
        el('StudyDate', '20190304'),
        el('AcquisitionDateTime', '20190304101530.123'),
        el('StudyTime', '101530'),
        el('PatientAddress', '12 Elm Street, Springfield, IL 62704'),
        el('RegionOfResidence', 'Sangamon County'),
        el('CountryOfResidence', 'USA'),
      ]),
      profile('safe-harbor'),
    );
    expect(text(parsed.dataset, 'StudyDate')).toBe('20190101');
    expect(text(parsed.dataset, 'AcquisitionDateTime')).toBe('2019');
    expect(text(parsed.dataset, 'StudyTime') ?? '').toBe('');
    expect(text(parsed.dataset, 'PatientAddress')).toBeUndefined();
    expect(text(parsed.dataset, 'RegionOfResidence')).toBeUndefined();
    expect(text(parsed.dataset, 'CountryOfResidence')).toBe('USA');
    // Dates reduced to the year are modified dates (C.7.1.4.1.1), and the gate expects exactly that.
    expect(text(parsed.dataset, 'LongitudinalTemporalInformationModified')).toBe('MODIFIED');
    expect(text(parsed.dataset, 'DeidentificationMethod')).toMatch(/^safe-harbor 1\.0\.0;/);
  });
});

describe('limited-data-set: dates and state kept, direct identifiers removed', () => {
  test('given the real MR fixture with dates and residence, then the dates and region stay exact and the street address goes', async () => {
    const { parsed } = await deidentify(
      await plantedFixture([el('StudyDate', '20190304'), el('PatientAddress', '12 Elm Street, Springfield, IL 62704'), el('RegionOfResidence', 'IL')]),
      profile('limited-data-set'),
    );
    expect(text(parsed.dataset, 'StudyDate')).toBe('20190304');
    expect(text(parsed.dataset, 'RegionOfResidence')).toBe('IL');
    expect(text(parsed.dataset, 'PatientAddress')).toBeUndefined();
    expect(text(parsed.dataset, 'LongitudinalTemporalInformationModified')).toBe('UNMODIFIED');
  });
});

/** One planted value per Safe Harbor identifier that DICOM has an attribute for (45 CFR 164.514(b)(2)(i)). */
const SAFE_HARBOR_PLANTS: readonly [identifier: string, keyword: string, value: string][] = [
  ['A names', 'PatientName', 'Quigley^Maribel'],
  ['A names (other)', 'PatientMotherBirthName', 'Fenwick^Odile'],
  ['B street address', 'PatientAddress', '77 Larkspur Lane Smallville'],
  ['D telephone', 'PatientTelephoneNumbers', '555-867-5309'],
  ['F e-mail', 'PatientTelecomInformation', 'maribel.q@example.org'],
  ['H medical record number', 'PatientID', 'MRN99887766'],
  ['H medical record number (other)', 'MedicalRecordLocator', 'LOC55443322'],
  ['I health plan number', 'InsurancePlanIdentification', 'PLAN77665544'],
  ['J account number', 'AdmissionID', 'ADM33445566'],
  ['M device serial number', 'DeviceSerialNumber', 'SN-ABCD-24680'],
  ['R other unique number', 'AccessionNumber', 'ACC13579246'],
  ['R other unique number (study)', 'StudyID', 'STU8642'],
];

describe('each Safe Harbor identifier DICOM has an attribute for leaves no value in the output', () => {
  test.each(['safe-harbor', 'limited-data-set', 'research-default', 'basic'])('given the real MR fixture with each planted, under %s, then none of the values is in the output bytes', async (name) => {
    const planted = SAFE_HARBOR_PLANTS.map(([, k, v]) => el(k, v));
    const { bytes } = await deidentify(await plantedFixture(planted), profile(name));
    const left = SAFE_HARBOR_PLANTS.filter(([identifier, k, v]) => {
      // Retain Device Identity (research-default) keeps serial numbers by design: the README table says so.
      if (name === 'research-default' && k === 'DeviceSerialNumber') return false;
      return identifier !== '' && bytes.includes(Buffer.from(v.split('^')[0] ?? v, 'latin1'));
    });
    expect(left.map(([identifier]) => identifier)).toEqual([]);
  });
});

describe('DEID_PROFILE selects a built-in profile by name', () => {
  test('given each built-in name, then that profile loads; given no setting, then research-default', () => {
    expect(BUILT_IN_PROFILE_NAMES).toEqual(expect.arrayContaining(['basic', 'research-default', 'safe-harbor', 'limited-data-set']));
    for (const name of BUILT_IN_PROFILE_NAMES) expect(loadDeidProfile(name).name).toBe(name);
    expect(loadDeidProfile(undefined).name).toBe('research-default');
    expect(profile('limited-data-set').agesOver89).toBe('keep');
    expect(profile('research-default').agesOver89).toBe('aggregate');
  });
});
