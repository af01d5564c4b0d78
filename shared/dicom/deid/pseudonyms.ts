/**
 * Keyed, stateless derivations of research identifiers.
 *
 * Every function is a pure function of the key and its inputs (HMAC-SHA256), so that one
 * source identifier maps to the same research identifier in every file, process and
 * restart without a mapping table. Each derivation prefixes its HMAC input with its own
 * label, so that a UID, a patient ID and a date shift derived from the same text never
 * share bits.
 */
import { createHmac } from 'node:crypto';

/** What a pseudonym stands for; each kind has its own prefix and derivation label. */
export type PseudonymKind = 'patient' | 'accession' | 'study-id' | 'other';

const PREFIX: Record<PseudonymKind, string> = {
  patient: 'P',
  accession: 'A',
  'study-id': 'S',
  other: 'H',
};

/**
 * Crockford's base32 alphabet: upper case (valid in CS, SH and LO) and free of I, L, O, U,
 * which people misread when they copy a pseudonym by hand.
 */
const BASE32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** Characters after the prefix: 60 bits, so 10 million patients collide with odds ~4e-5. */
const PSEUDONYM_CHARS = 12;

/** Shifts move dates 1 to 10 years into the past; see dateShiftDays. */
export const DATE_SHIFT_MIN_DAYS = -3650;
export const DATE_SHIFT_MAX_DAYS = -365;

function hmac(key: Buffer, label: string, ...parts: string[]): Buffer {
  const mac = createHmac('sha256', key);
  mac.update(label);
  // NUL cannot occur in DICOM text, so it separates parts without ambiguity.
  for (const p of parts) mac.update(`\0${p}`, 'utf8');
  return mac.digest();
}

/** Values arrive with DICOM padding at times; the mapping must not depend on it. */
function unpad(value: string): string {
  return value.replace(/[\0 ]+$/, '').replace(/^ +/, '');
}

/**
 * The research UID of a source UID: "2.25." and the decimal value of the first 128 bits of
 * the keyed hash (PS3.5 B.2 UUID-derived form). At most 44 characters; the decimal form of
 * a BigInt has no leading zero, so the result is a valid UID.
 */
export function researchUid(key: Buffer, uid: string): string {
  const digest = hmac(key, 'uid', unpad(uid));
  return `2.25.${BigInt(`0x${digest.subarray(0, 16).toString('hex')}`).toString(10)}`;
}

/**
 * A short pseudonym: one prefix letter and 12 base32 characters (13 in all, within SH's 16).
 * `issuer` scopes the value, e.g. the Issuer of Patient ID, so that the same local ID from
 * two issuers gives two pseudonyms.
 */
export function pseudonym(key: Buffer, kind: PseudonymKind, value: string, issuer = ''): string {
  const digest = hmac(key, `pseudonym:${kind}`, unpad(issuer), unpad(value));
  let bits = 0n;
  for (let i = 0; i < 8; i++) bits = (bits << 8n) | BigInt(digest[i] ?? 0);
  let out = '';
  for (let i = 0; i < PSEUDONYM_CHARS; i++) {
    out = BASE32[Number(bits & 31n)] + out;
    bits >>= 5n;
  }
  return PREFIX[kind] + out;
}

/**
 * The date shift of one patient, in whole days, in [DATE_SHIFT_MIN_DAYS, DATE_SHIFT_MAX_DAYS].
 * Always at least a year back, so a shifted date never keeps the real year and never lies in
 * the future; whole days keep every time of day and every interval between the patient's
 * dates. Patients without an ID share the shift of the empty ID.
 */
export function dateShiftDays(key: Buffer, patientId: string, issuer = ''): number {
  const digest = hmac(key, 'date-shift', unpad(issuer), unpad(patientId));
  const span = DATE_SHIFT_MAX_DAYS - DATE_SHIFT_MIN_DAYS + 1;
  return DATE_SHIFT_MIN_DAYS + (digest.readUInt32BE(0) % span);
}

/** What one research patient (its pseudonym, its date shift) is derived from: a value and its scope. */
export interface ResearchPatientKey {
  value: string;
  scope: string;
}

/**
 * The research patient of a file, the same for every file of a source study:
 * - "patientId" (the default): the Patient ID alone. The Issuer of Patient ID is ignored, since
 *   modalities and archives add or drop it from file to file; every study of the patient gets
 *   the same pseudonym and date shift, so intervals between studies survive. Two patients
 *   whose IDs from two issuers are equal become one research patient.
 * - "study": the Study Instance UID. One study is one research patient whatever Patient ID
 *   variants its files carry, but each study of a patient is a research patient of its own,
 *   with its own shift: nothing links studies of one patient.
 * No state is shared: every function instance derives the same key from the file alone.
 */
export function researchPatientKey(mode: 'patientId' | 'study', patientId: string, studyInstanceUid: string | undefined): ResearchPatientKey {
  if (mode === 'study' && studyInstanceUid) return { value: unpad(studyInstanceUid), scope: 'study' };
  return { value: unpad(patientId), scope: '' };
}

const DAY_MS = 86_400_000;

function shiftYmd(year: number, month: number, day: number, days: number): [number, number, number] | undefined {
  const t = Date.UTC(year, month - 1, day);
  const d = new Date(t);
  // Date.UTC rolls 20230230 over to March: such a value is not a date, and is not shifted.
  if (d.getUTCFullYear() !== year || d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day) return undefined;
  const s = new Date(t + days * DAY_MS);
  const y = s.getUTCFullYear();
  if (y < 1 || y > 9999) return undefined;
  return [y, s.getUTCMonth() + 1, s.getUTCDate()];
}

const pad = (n: number, width: number) => String(n).padStart(width, '0');

function shiftOneDate(value: string, days: number): string | undefined {
  // DA is YYYYMMDD; ACR-NEMA files also carry YYYY.MM.DD, which keeps its dots.
  const m = /^(\d{4})(\.?)(\d{2})\2(\d{2})$/.exec(value);
  if (!m) return undefined;
  const shifted = shiftYmd(Number(m[1]), Number(m[3]), Number(m[4]), days);
  if (!shifted) return undefined;
  const sep = m[2] ?? '';
  return `${pad(shifted[0], 4)}${sep}${pad(shifted[1], 2)}${sep}${pad(shifted[2], 2)}`;
}

/**
 * Shifts a DA value (each value of a multi-valued one) by whole days, keeping its format.
 * Undefined when a value is not a valid date: the caller must then not keep the original.
 */
export function shiftDate(value: string, days: number): string | undefined {
  const values = unpad(value).split('\\');
  const out: string[] = [];
  for (const v of values) {
    const s = shiftOneDate(v.trim(), days);
    if (s === undefined) return undefined;
    out.push(s);
  }
  return out.join('\\');
}

function shiftOneDateTime(value: string, days: number): string | undefined {
  const m = /^(\d{4})(\d{2})?(\d{2})?(.*)$/.exec(value);
  if (!m) return undefined;
  const [, yyyy, mm, dd, rest] = m;
  // Only a day-precise value has a day to shift; coarser values are shifted from the first
  // day of their period and cut back to their own precision.
  if (dd === undefined && rest !== '') return undefined;
  if (rest !== undefined && rest !== '' && !/^(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?([+-]\d{4})?$/.test(rest)) return undefined;
  const shifted = shiftYmd(Number(yyyy), Number(mm ?? '01'), Number(dd ?? '01'), days);
  if (!shifted) return undefined;
  let out = pad(shifted[0], 4);
  if (mm !== undefined) out += pad(shifted[1], 2);
  if (dd !== undefined) out += pad(shifted[2], 2) + (rest ?? '');
  return out;
}

/**
 * Shifts a DT value (each value of a multi-valued one) by whole days, keeping the time, the
 * fraction, the UTC offset and the precision as they were. Undefined when not a valid DT.
 */
export function shiftDateTime(value: string, days: number): string | undefined {
  const out: string[] = [];
  for (const v of unpad(value).split('\\')) {
    const s = shiftOneDateTime(v.trim(), days);
    if (s === undefined) return undefined;
    out.push(s);
  }
  return out.join('\\');
}
