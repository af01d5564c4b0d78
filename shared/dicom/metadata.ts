/**
 * What the catalog keeps of a data set: DICOM JSON (PS3.18 F.2) of the attributes research
 * queries need, split by level (patient, study, series, instance), decoded to Unicode by the
 * data set's Specific Character Set.
 *
 * Called on the de-identified data set only: nothing here ever sees the identified source.
 */
import { decodeText, parseSpecificCharacterSet } from './charset';
import { asciiValue, CHARSET_VRS, DicomDataset, DicomElement, TEXT_VRS } from './dataset';
import { tagToHex } from './dictionary';
import type { DicomJson, DicomJsonAttribute } from './json';
import { Tags } from './tags';

export type Level = 'patient' | 'study' | 'series' | 'instance';

/** Attributes that belong to the patient, study and series levels; everything else is instance level. */
const LEVEL_TAGS: Record<Exclude<Level, 'instance'>, number[]> = {
  patient: [
    Tags.PatientName,
    Tags.PatientID,
    Tags.IssuerOfPatientID,
    Tags.PatientBirthDate,
    Tags.PatientSex,
    Tags.PatientAge,
    Tags.PatientSize,
    Tags.PatientWeight,
    Tags.PatientIdentityRemoved,
    Tags.DeidentificationMethod,
    Tags.LongitudinalTemporalInformationModified,
  ],
  study: [
    Tags.SpecificCharacterSet,
    Tags.StudyInstanceUID,
    Tags.StudyDate,
    Tags.StudyTime,
    Tags.AccessionNumber,
    Tags.ReferringPhysicianName,
    Tags.StudyDescription,
    Tags.StudyID,
  ],
  series: [
    Tags.SeriesInstanceUID,
    Tags.Modality,
    Tags.SeriesNumber,
    Tags.SeriesDescription,
    Tags.BodyPartExamined,
    Tags.SeriesDate,
    Tags.SeriesTime,
    Tags.Manufacturer,
    Tags.ManufacturerModelName,
    Tags.ProtocolName,
    Tags.Laterality,
    Tags.PerformedProcedureStepStartDate,
    Tags.PerformedProcedureStepStartTime,
    Tags.StationName,
    Tags.InstitutionName,
  ],
};

const LEVEL_OF = new Map<number, Level>();
for (const [level, tags] of Object.entries(LEVEL_TAGS) as [Level, number[]][]) for (const t of tags) LEVEL_OF.set(t, level);

export function levelOf(tag: number): Level {
  return LEVEL_OF.get(tag) ?? 'instance';
}

/** Values longer than this are left out of the catalog (they are in the research copy). */
const MAX_CATALOG_VALUE_BYTES = 1024;

function numbers(el: DicomElement, littleEndian: boolean): number[] {
  const v = el.value;
  if (!v || v.length === 0) return [];
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  const out: number[] = [];
  const size = { US: 2, SS: 2, UL: 4, SL: 4, FL: 4, FD: 8, SV: 8, UV: 8 }[el.vr] ?? 0;
  for (let o = 0; size > 0 && o + size <= v.length; o += size) {
    switch (el.vr) {
      case 'US': out.push(dv.getUint16(o, littleEndian)); break;
      case 'SS': out.push(dv.getInt16(o, littleEndian)); break;
      case 'UL': out.push(dv.getUint32(o, littleEndian)); break;
      case 'SL': out.push(dv.getInt32(o, littleEndian)); break;
      case 'FL': out.push(dv.getFloat32(o, littleEndian)); break;
      case 'FD': out.push(dv.getFloat64(o, littleEndian)); break;
      case 'SV': out.push(Number(dv.getBigInt64(o, littleEndian))); break;
      case 'UV': out.push(Number(dv.getBigUint64(o, littleEndian))); break;
    }
  }
  return out;
}

function textOf(el: DicomElement, charsets: string[]): string {
  if (!el.value) return '';
  if (CHARSET_VRS.has(el.vr)) return decodeText(el.value, charsets, el.vr);
  return Buffer.from(el.value.buffer, el.value.byteOffset, el.value.byteLength).toString('latin1');
}

/**
 * How a full data set (WADO-RS metadata) is written rather than the catalog's subset: every
 * value kept, binary values inline up to `maxInlineBytes` and as a BulkDataURI past it.
 */
export interface BulkDataOptions {
  /** Largest binary (or numeric) value given inline; larger ones become a BulkDataURI. */
  maxInlineBytes: number;
  /** Deepest sequence nesting written. */
  maxDepth: number;
  /** The BulkDataURI of the value at a path ("00540016/0/00181072": tags and item indexes). */
  uri(path: string): string;
}

/** VRs whose value is bytes rather than text or numbers. */
const BINARY_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']);

/**
 * One element as a DICOM JSON attribute, or undefined for what the catalog does not hold (bulk
 * data). With `bulk`, nothing is left out: see BulkDataOptions; `path` names the element for its URI.
 */
export function elementToJson(el: DicomElement, charsets: string[], littleEndian: boolean, depth = 0, bulk?: BulkDataOptions, path = tagToHex(el.tag)): DicomJsonAttribute | undefined {
  if (el.items) {
    if (depth >= (bulk?.maxDepth ?? 2)) return undefined;
    const items = el.items.map((item, i) => datasetToJson(item, charsets, littleEndian, depth + 1, undefined, bulk, `${path}/${i}/`));
    return items.length ? { vr: 'SQ', Value: items } : { vr: 'SQ' };
  }
  if (bulk) {
    const length = el.value?.length ?? 0;
    const numeric = ['US', 'SS', 'UL', 'SL', 'FL', 'FD', 'SV', 'UV', 'AT'].includes(el.vr);
    if (el.encapsulated || ((BINARY_VRS.has(el.vr) || numeric) && length > bulk.maxInlineBytes)) return { vr: el.vr, BulkDataURI: bulk.uri(path) };
    if (BINARY_VRS.has(el.vr)) return length ? { vr: el.vr, InlineBinary: Buffer.from(el.value as Uint8Array).toString('base64') } : { vr: el.vr };
  }
  if (!bulk && el.value && el.value.length > MAX_CATALOG_VALUE_BYTES) return undefined;
  const vr = el.vr;
  if (vr === 'AT') {
    const v = el.value ?? new Uint8Array();
    const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
    const vals: string[] = [];
    for (let o = 0; o + 4 <= v.length; o += 4) vals.push(tagToHex(((dv.getUint16(o, littleEndian) << 16) | dv.getUint16(o + 2, littleEndian)) >>> 0));
    return vals.length ? { vr, Value: vals } : { vr };
  }
  if (['US', 'SS', 'UL', 'SL', 'FL', 'FD', 'SV', 'UV'].includes(vr)) {
    const vals = numbers(el, littleEndian).map((n) => (Number.isFinite(n) ? n : null));
    return vals.length ? { vr, Value: vals } : { vr };
  }
  if (!TEXT_VRS.has(vr)) return undefined;
  const text = textOf(el, charsets);
  const single = vr === 'LT' || vr === 'ST' || vr === 'UT' || vr === 'UR';
  const raw = single ? [text] : text.split('\\');
  const trimmed = raw.map((s) => (vr === 'UI' ? s.replace(/[\0 ]+$/g, '') : s.replace(/[\0 ]+$/g, '').replace(/^ +/, '')));
  if (trimmed.every((s) => s === '')) return { vr };
  if (vr === 'PN') {
    return {
      vr,
      Value: trimmed.map((s) => {
        const [alphabetic, ideographic, phonetic] = s.split('=');
        const pn: Record<string, string> = {};
        if (alphabetic) pn.Alphabetic = alphabetic;
        if (ideographic) pn.Ideographic = ideographic;
        if (phonetic) pn.Phonetic = phonetic;
        return pn;
      }),
    };
  }
  if (vr === 'DS' || vr === 'IS') {
    const vals = trimmed.map((s) => (s === '' ? null : Number(s)));
    if (vals.some((n) => n !== null && !Number.isFinite(n))) return { vr, Value: trimmed };
    return { vr, Value: vals };
  }
  return { vr, Value: trimmed.map((s) => (s === '' ? null : s)) };
}

/** A data set (or item) as DICOM JSON; with `bulk`, every value (see BulkDataOptions), `prefix` being the item's path. */
export function datasetToJson(ds: DicomDataset, charsets: string[], littleEndian: boolean, depth = 0, filter?: (tag: number) => boolean, bulk?: BulkDataOptions, prefix = ''): DicomJson {
  const out: DicomJson = {};
  const tags = [...ds.keys()].sort((a, b) => a - b);
  for (const tag of tags) {
    if (filter && !filter(tag)) continue;
    if ((tag & 0xffff) === 0) continue;
    const el = ds.get(tag);
    if (!el) continue;
    const json = elementToJson(el, charsets, littleEndian, depth, bulk, `${prefix}${tagToHex(tag)}`);
    if (json) out[tagToHex(tag)] = json;
  }
  return out;
}

export interface CatalogMetadata {
  /** Patient and study attributes. */
  study: DicomJson;
  /** Patient, study and series attributes. */
  series: DicomJson;
  /** Every cataloged attribute of the instance (all levels). */
  instance: DicomJson;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
  sopClassUid: string;
  modality: string;
}

/** Splits a (de-identified) data set into the DICOM JSON of each catalog level. */
export function catalogMetadata(ds: DicomDataset, littleEndian: boolean, extra: DicomJson = {}): CatalogMetadata {
  const charsets = parseSpecificCharacterSet(asciiValue(ds.get(Tags.SpecificCharacterSet)));
  const instance = { ...datasetToJson(ds, charsets, littleEndian, 1), ...extra };
  const study: DicomJson = {};
  const series: DicomJson = {};
  for (const [key, value] of Object.entries(instance)) {
    const level = levelOf(parseInt(key, 16) >>> 0);
    if (level === 'patient' || level === 'study') {
      study[key] = value;
      series[key] = value;
    } else if (level === 'series') {
      series[key] = value;
    }
  }
  return {
    study,
    series,
    instance: sortJson(instance),
    studyInstanceUid: asciiValue(ds.get(Tags.StudyInstanceUID)) ?? '',
    seriesInstanceUid: asciiValue(ds.get(Tags.SeriesInstanceUID)) ?? '',
    sopInstanceUid: asciiValue(ds.get(Tags.SOPInstanceUID)) ?? '',
    sopClassUid: asciiValue(ds.get(Tags.SOPClassUID)) ?? '',
    modality: asciiValue(ds.get(Tags.Modality)) ?? '',
  };
}

export function sortJson(json: DicomJson): DicomJson {
  return Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
