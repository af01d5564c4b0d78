/**
 * Every fixture through the pipeline core under both built-in profiles: the gate must pass
 * each output it did not have to stop, and a simple check of its own, sharing no rule with
 * identifying.ts, confirms that the patient's name, ID, birth date and the source's Study,
 * Series and SOP Instance UIDs are gone from the header that would be written.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

import { bufferReader } from '../../../../shared/dicom/byteReader';
import { decodeText, parseSpecificCharacterSet } from '../../../../shared/dicom/charset';
import { asciiValue, DicomDataset, DicomElement, Tags } from '../../../../shared/dicom/dataset';
import { deidentifyDataset } from '../../../../shared/dicom/deid/engine';
import { valueMatcher } from '../../../../shared/dicom/deid/identifying';
import { basicProfile, defaultProfile, Profile } from '../../../../shared/dicom/deid/profile';
import { resolveAction } from '../../../../shared/dicom/deid/resolve';
import { verifyDeidentifiedDataset } from '../../../../shared/dicom/deid/verify';
import { parseDicomBuffer, readHeader } from '../../../../shared/dicom/parser';
import { ErrorCodes, isPipelineError } from '../../../../shared/errors';
import { prepareDeidentifiedInstance } from '../../../../shared/ingest/deidentifyInstance';
import { dataset, el, sampleDataset, seq, tagOf } from './helpers';

const FIXTURES = join(__dirname, '..', '..', '..', 'fixtures', 'dicom');
const key = Buffer.from('gate fixture key, 32 bytes long.');
const DICOMDIR_SOP_CLASS = '1.2.840.10008.1.3.10';
const MAX_HEADER_BYTES = 64 << 20;
const PATIENT_NAME = 0x00100010;
const PATIENT_ID = 0x00100020;
const PATIENT_BIRTH_DATE = 0x00100030;

/**
 * Name components that are not names (test data's "Test^Patient"): kept device values such
 * as "Test Manufacturer" hold them too. The whole name is still looked for.
 */
const PLACEHOLDERS = new Set(['test', 'patient', 'phantom', 'anonymous', 'unknown', 'name', 'first', 'last', 'middle']);
/** The engine's own dummies: a source that already held one shows it again where Basic asks for a dummy. */
const DUMMIES = new Set(['ANONYMIZED', '19000101']);
/** Number strings hold counts and measurements; an all-digit ID equal to one is a coincidence. */
const NUMBER_VRS = new Set(['IS', 'DS']);
const BINARY_NUMBER_VRS = new Set(['US', 'SS', 'UL', 'SL', 'FL', 'FD', 'AT', 'SV', 'UV', 'OF', 'OD', 'OL', 'OV']);

function listFiles(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return listFiles(p);
    return /\.(md|tsv)$/.test(name) ? [] : [p];
  });
}

function charsetsOf(ds: DicomDataset, inherited: string[]): string[] {
  const el = ds.get(Tags.SpecificCharacterSet);
  return el ? parseSpecificCharacterSet(asciiValue(el) ?? '') : inherited;
}

function textOf(el: DicomElement | undefined, charsets: string[]): string {
  if (!el?.value || el.value.length === 0) return '';
  return decodeText(el.value, charsets, el.vr).replace(/[\0 ]+$/, '').trim();
}

interface Needle {
  what: string;
  value: string;
  uid?: boolean;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Not inside a longer word, number or UID. */
function matcher(value: string): RegExp {
  return new RegExp(`(?<![\\p{L}\\p{N}])(?<!\\p{N}\\.)${escapeRegExp(value)}(?![\\p{L}\\p{N}])(?!\\.\\p{N})`, 'iu');
}

/** What the source says about the patient and its instance, read here with simple rules of this test. */
function needlesOf(ds: DicomDataset): Needle[] {
  const cs = charsetsOf(ds, []);
  const needles: Needle[] = [];
  const name = textOf(ds.get(PATIENT_NAME), cs);
  for (const group of name.split('=')) {
    const whole = group.replace(/\^+$/, '');
    if (whole.length >= 3) needles.push({ what: 'PatientName', value: whole });
    for (const part of whole.split(/[\^ ,]+/)) {
      if ([...part].length >= 3 && !PLACEHOLDERS.has(part.toLowerCase())) needles.push({ what: 'PatientName component', value: part });
    }
  }
  const id = textOf(ds.get(PATIENT_ID), cs);
  if (id.length >= 3) needles.push({ what: 'PatientID', value: id });
  const birth = textOf(ds.get(PATIENT_BIRTH_DATE), cs);
  if (/^\d{8}$/.test(birth)) needles.push({ what: 'PatientBirthDate', value: birth });
  for (const [what, tag] of [['StudyInstanceUID', Tags.StudyInstanceUID], ['SeriesInstanceUID', Tags.SeriesInstanceUID], ['SOPInstanceUID', Tags.SOPInstanceUID]] as const) {
    const uid = asciiValue(ds.get(tag));
    if (uid) needles.push({ what, value: uid, uid: true });
  }
  return needles;
}

/** Every value of the written header as text: decoded, and as raw latin1 for the opaque ones. */
function textsOf(ds: DicomDataset, inherited: string[], out: { vr: string; text: string }[]): void {
  const cs = charsetsOf(ds, inherited);
  for (const el of ds.values()) {
    if (el.items) {
      for (const item of el.items) textsOf(item, cs, out);
    } else if (el.value && !BINARY_NUMBER_VRS.has(el.vr)) {
      const raw = Buffer.from(el.value.buffer, el.value.byteOffset, el.value.byteLength);
      out.push({ vr: el.vr, text: raw.toString('latin1') });
      if (!['OB', 'OW', 'UN'].includes(el.vr)) out.push({ vr: el.vr, text: textOf(el, cs) });
    }
  }
}

async function leaksIn(headerBytes: Buffer, needles: Needle[], pseudonym: string): Promise<string[]> {
  const written = await parseDicomBuffer(headerBytes);
  const texts: { vr: string; text: string }[] = [];
  textsOf(written.meta, [], texts);
  textsOf(written.dataset, [], texts);
  const whole = [headerBytes.toString('latin1'), headerBytes.toString('utf8')];
  const leaks: string[] = [];
  for (const n of needles) {
    if (n.value.toUpperCase() === pseudonym.toUpperCase() || DUMMIES.has(n.value.toUpperCase())) continue;
    const re = matcher(n.value);
    const digits = /^\d+$/.test(n.value);
    // A UID is looked for as a whole UI value too: a source UID as short as "1" would match
    // every standalone digit in the text search, which is kept for those of 3 or more.
    const asUid = n.uid === true && texts.some((t) => t.vr === 'UI' && t.text.split('\\').some((u) => u.replace(/\0+$/, '').trim() === n.value));
    const searched = n.value.length >= 3;
    // The raw bytes catch what the parser would not show; an all-digit value is looked for
    // per attribute instead, so that a number attribute's equal value is not taken for it.
    const inBytes = searched && !digits && whole.some((t) => re.test(t));
    const inTexts = searched && texts.some((t) => !(digits && NUMBER_VRS.has(t.vr)) && re.test(t.text));
    if (asUid || inBytes || inTexts) leaks.push(n.what);
  }
  return leaks;
}

interface Eligible {
  name: string;
  bytes: Buffer;
  needles: Needle[];
}

async function eligibleFixtures(): Promise<Eligible[]> {
  const out: Eligible[] = [];
  for (const file of listFiles(FIXTURES)) {
    const bytes = readFileSync(file);
    let parsed;
    try {
      // The pipeline's own header reader: a file whose pixel data is cut short still has a header to check.
      parsed = await readHeader(bufferReader(bytes), { maxHeaderBytes: MAX_HEADER_BYTES, totalSize: bytes.length });
    } catch {
      continue;
    }
    const ds = parsed.dataset;
    const sopClass = asciiValue(ds.get(Tags.SOPClassUID)) ?? asciiValue(parsed.meta.get(Tags.MediaStorageSOPClassUID));
    const sopInstance = asciiValue(ds.get(Tags.SOPInstanceUID)) ?? asciiValue(parsed.meta.get(Tags.MediaStorageSOPInstanceUID));
    if (!sopClass || !sopInstance || sopClass === DICOMDIR_SOP_CLASS) continue;
    if (!asciiValue(ds.get(Tags.StudyInstanceUID)) || !asciiValue(ds.get(Tags.SeriesInstanceUID))) continue;
    out.push({ name: relative(FIXTURES, file), bytes, needles: needlesOf(ds) });
  }
  return out;
}

async function firstChunk(gen: AsyncGenerator<Uint8Array>): Promise<Buffer> {
  const first = await gen.next();
  await gen.return(undefined);
  if (first.done) throw new Error('no output');
  return Buffer.from(first.value);
}

describe('every fixture through the gate', () => {
  let fixtures: Eligible[];

  beforeAll(async () => {
    fixtures = await eligibleFixtures();
  });

  it.each([
    ['research default', defaultProfile],
    ['basic', basicProfile],
  ] as [string, () => Profile][])('given the %s profile, then no file fails verification and none keeps the patient or its UIDs', async (label, makeProfile) => {
    const profile = makeProfile();
    const gateFailures: string[] = [];
    const otherErrors: string[] = [];
    const leaks: string[] = [];
    let checked = 0;
    for (const f of fixtures) {
      try {
        const prepared = await prepareDeidentifiedInstance(bufferReader(f.bytes), {
          deid: { profile, key, keyId: 'gate-fixtures' },
          maxHeaderBytes: MAX_HEADER_BYTES,
          totalSize: f.bytes.length,
          burnedIn: { mode: 'allow' },
        });
        const header = await firstChunk(prepared.output());
        const pseudonym = asciiValue(prepared.dataset.get(PATIENT_NAME)) ?? '';
        for (const what of await leaksIn(header, f.needles, pseudonym)) leaks.push(`${f.name}: ${what}`);
        checked++;
      } catch (e) {
        if (isPipelineError(e) && e.code === ErrorCodes.DEID_VERIFICATION_FAILED) gateFailures.push(`${f.name}: ${e.message}`);
        else otherErrors.push(`${f.name}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    console.log(`gate fixtures, ${label} profile: ${checked} of ${fixtures.length} eligible files checked`);
    expect(gateFailures).toEqual([]);
    expect(otherErrors).toEqual([]);
    expect(leaks).toEqual([]);
    expect(checked).toBe(fixtures.length);
    expect(checked).toBeGreaterThan(0);
  });
});

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
    expect(gate([el('Manufacturer', 'Smithers Medical')])).toEqual([expect.stringMatching(/^\(0008,0070\) Manufacturer: holds an identifying value/)]);
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
