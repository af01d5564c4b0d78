/**
 * The independent leak check of the gate tests: the patient's name, ID and birth date and the
 * source's instance UIDs, read from the source and looked for in a written header with simple
 * rules of its own. It shares no rule with identifying.ts on purpose: an independent check must
 * not borrow the rules it checks.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

import { bufferReader } from '../../../../shared/dicom/byteReader';
import { decodeText, parseSpecificCharacterSet } from '../../../../shared/dicom/charset';
import { asciiValue, DicomDataset, DicomElement } from '../../../../shared/dicom/dataset';
import { parseDicomBuffer, readHeader } from '../../../../shared/dicom/parser';
import { Tags } from '../../../../shared/dicom/tags';

export const FIXTURES = join(__dirname, '..', '..', '..', 'fixtures', 'dicom');
export const DICOMDIR_SOP_CLASS = '1.2.840.10008.1.3.10';
export const MAX_HEADER_BYTES = 64 << 20;
export const PATIENT_NAME = 0x00100010;
export const PATIENT_ID = 0x00100020;
export const PATIENT_BIRTH_DATE = 0x00100030;

/** Name components that are not names (test data's "Test^Patient"); the whole name is still looked for. */
export const PLACEHOLDERS = new Set(['test', 'patient', 'phantom', 'anonymous', 'unknown', 'name', 'first', 'last', 'middle']);
/** The engine's own dummies: a source that already held one shows it again where Basic asks for a dummy. */
export const DUMMIES = new Set(['ANONYMIZED', '19000101']);
/** Number strings hold counts and measurements; an all-digit ID equal to one is a coincidence. */
export const NUMBER_VRS = new Set(['IS', 'DS']);
export const BINARY_NUMBER_VRS = new Set(['US', 'SS', 'UL', 'SL', 'FL', 'FD', 'AT', 'SV', 'UV', 'OF', 'OD', 'OL', 'OV']);

export function listFiles(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return listFiles(p);
    return /\.(md|tsv)$/.test(name) ? [] : [p];
  });
}

export function charsetsOf(ds: DicomDataset, inherited: string[]): string[] {
  const el = ds.get(Tags.SpecificCharacterSet);
  return el ? parseSpecificCharacterSet(asciiValue(el) ?? '') : inherited;
}

export function textOf(el: DicomElement | undefined, charsets: string[]): string {
  if (!el?.value || el.value.length === 0) return '';
  return decodeText(el.value, charsets, el.vr).replace(/[\0 ]+$/, '').trim();
}

export interface Needle {
  what: string;
  value: string;
  uid?: boolean;
}

export function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Not inside a longer word, number or UID. */
export function matcher(value: string): RegExp {
  return new RegExp(`(?<![\\p{L}\\p{N}])(?<!\\p{N}\\.)${escapeRegExp(value)}(?![\\p{L}\\p{N}])(?!\\.\\p{N})`, 'iu');
}

/** Every 8-digit value of a DA or DT (its date part) anywhere in the source, the birth date aside. */
export function otherDatesOf(ds: DicomDataset, out = new Set<string>()): Set<string> {
  for (const e of ds.values()) {
    if (e.items) e.items.forEach((item) => otherDatesOf(item, out));
    else if (e.tag !== PATIENT_BIRTH_DATE && (e.vr === 'DA' || e.vr === 'DT')) {
      for (const v of (asciiValue(e) ?? '').split('\\')) if (/^\d{8}/.test(v.trim())) out.add(v.trim().slice(0, 8));
    }
  }
  return out;
}

/** What the source says about the patient and its instance, read here with simple rules of this test. */
export function needlesOf(ds: DicomDataset): Needle[] {
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
export function textsOf(ds: DicomDataset, inherited: string[], out: { vr: string; text: string }[]): void {
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

export async function leaksIn(headerBytes: Buffer, needles: Needle[], pseudonym: string): Promise<string[]> {
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
    const asUid = n.uid === true && texts.some((t) => t.vr === 'UI' && t.text.split('\\').some((u) => u.replace(/\0+$/, '').trim() === n.value));
    const searched = n.value.length >= 3;
    const inBytes = searched && !digits && whole.some((t) => re.test(t));
    const inTexts = searched && texts.some((t) => !(digits && NUMBER_VRS.has(t.vr)) && re.test(t.text));
    if (asUid || inBytes || inTexts) leaks.push(n.what);
  }
  return leaks;
}

export interface Eligible {
  name: string;
  bytes: Buffer;
  needles: Needle[];
  /** The source's other dates: a birth date equal to one of them is a coincidence Full Dates keeps. */
  otherDates: Set<string>;
}

export async function eligibleFixtures(): Promise<Eligible[]> {
  const out: Eligible[] = [];
  for (const file of listFiles(FIXTURES)) {
    const bytes = readFileSync(file);
    let parsed;
    try {
      parsed = await readHeader(bufferReader(bytes), { maxHeaderBytes: MAX_HEADER_BYTES, totalSize: bytes.length });
    } catch {
      continue;
    }
    const ds = parsed.dataset;
    const sopClass = asciiValue(ds.get(Tags.SOPClassUID)) ?? asciiValue(parsed.meta.get(Tags.MediaStorageSOPClassUID));
    const sopInstance = asciiValue(ds.get(Tags.SOPInstanceUID)) ?? asciiValue(parsed.meta.get(Tags.MediaStorageSOPInstanceUID));
    if (!sopClass || !sopInstance || sopClass === DICOMDIR_SOP_CLASS) continue;
    if (!asciiValue(ds.get(Tags.StudyInstanceUID)) || !asciiValue(ds.get(Tags.SeriesInstanceUID))) continue;
    out.push({ name: relative(FIXTURES, file), bytes, needles: needlesOf(ds), otherDates: otherDatesOf(ds) });
  }
  return out;
}

export async function firstChunk(gen: AsyncGenerator<Uint8Array>): Promise<Buffer> {
  const first = await gen.next();
  await gen.return(undefined);
  if (first.done) throw new Error('no output');
  return Buffer.from(first.value);
}

