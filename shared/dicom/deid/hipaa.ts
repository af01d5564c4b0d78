/**
 * The two HIPAA rules PS3.15 has no option for: dates reduced to their year, and ages over 89
 * aggregated (45 CFR 164.514(b)(2)(i)(C)). Both work on text values; pure.
 */
import { asciiValue, DicomDataset, encodeAsciiValue } from '../dataset';
import { Tags } from '../tags';

/** The dates an age at the examination is measured at, most specific last. */
const EXAMINATION_DATES = [Tags.StudyDate, Tags.SeriesDate, Tags.AcquisitionDate, Tags.ContentDate] as const;

/** The value every age of 90 or more is written as: "90 or older" (AS cannot say more). */
export const AGGREGATED_AGE = '090Y';
const OLDEST_EXACT_YEARS = 89;

/**
 * A DA (YYYYMMDD, or ACR-NEMA YYYY.MM.DD) or DT value reduced to its year: DA YYYY0101, DT
 * YYYY. Multi-valued values are reduced value by value. Undefined when a value has no year:
 * the caller must then not keep it.
 */
export function reduceToYear(value: string, vr: 'DA' | 'DT'): string | undefined {
  const out: string[] = [];
  for (const v of value.replace(/[\0 ]+$/, '').split('\\')) {
    const m = /^\s*(\d{4})/.exec(v);
    if (!m?.[1]) return undefined;
    out.push(vr === 'DA' ? `${m[1]}0101` : m[1]);
  }
  return out.join('\\');
}

/** An AS value (nnnD, nnnW, nnnM, nnnY) in whole years (1079M is 89), or undefined when it is not one. */
function ageInYears(as: string): number | undefined {
  const m = /^(\d{3})([DWMY])$/.exec(as.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  switch (m[2]) {
    case 'D':
      return Math.floor(n / 365.25);
    case 'W':
      return Math.floor((n * 7) / 365.25);
    case 'M':
      return Math.floor(n / 12);
    default:
      return n;
  }
}

function ymd(da: string | undefined): [number, number, number] | undefined {
  const m = /^(\d{4})\.?(\d{2})\.?(\d{2})/.exec(da?.trim() ?? '');
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/** Whole years between two dates (the age on `at` of someone born on `born`). */
function yearsBetween(born: [number, number, number], at: [number, number, number]): number {
  const [by, bm, bd] = born;
  const [ay, am, ad] = at;
  return ay - by - (am < bm || (am === bm && ad < bd) ? 1 : 0);
}

/**
 * True when the source shows an age over 89: its Patient's Age, or its birth date against the
 * examination dates (study, series, acquisition, content). Read before anything is changed.
 */
export function showsAgeOver89(source: DicomDataset): boolean {
  const age = ageInYears(asciiValue(source.get(Tags.PatientAge)) ?? '');
  if (age !== undefined && age > OLDEST_EXACT_YEARS) return true;
  const born = ymd(asciiValue(source.get(Tags.PatientBirthDate)));
  if (!born) return false;
  return EXAMINATION_DATES.some((tag) => {
    const at = ymd(asciiValue(source.get(tag)));
    return at !== undefined && yearsBetween(born, at) > OLDEST_EXACT_YEARS;
  });
}

/**
 * Aggregates an age over 89 in the de-identified data set: Patient's Age becomes 090Y and the
 * birth date, which would give the age away next to any examination date, is emptied.
 * Returns the number of values changed.
 */
export function aggregateAgeOver89(ds: DicomDataset): number {
  let changed = 0;
  const age = ds.get(Tags.PatientAge);
  if (age?.value && age.value.length > 0 && asciiValue(age) !== AGGREGATED_AGE) {
    age.value = encodeAsciiValue(AGGREGATED_AGE, 'AS');
    changed++;
  }
  const birth = ds.get(Tags.PatientBirthDate);
  if (birth?.value && birth.value.length > 0) {
    birth.value = new Uint8Array(0);
    changed++;
  }
  return changed;
}
