/**
 * Applies a de-identification profile to one data set, in place. Stateless and keyed: every
 * replacement (UID, pseudonym, date shift) is derived from the key and the source value, so
 * files de-identified separately, in any order or process, stay consistent with each other.
 */
import { decodeText, encodeText } from '../charset';
import { asciiValue, DicomDataset, DicomElement, encodeAsciiValue, TEXT_VRS } from '../dataset';
import { isPrivateCreatorTag, isPrivateTag, tagToHex } from '../dictionary';
import { runSliced, runToEnd, STEPS_PER_CHECK } from '../limits';
import { Tags } from '../tags';
import type { CloudPhiRecognizer } from './freeText/cloud';
import { FreeTextDetector, localDetector, REDACTED } from './freeText/detector';
import { redactIso2022 } from './freeText/iso2022';
import { SourceNames, sourceNames } from './freeText/names';
import { DETECTED_VRS, detectsKeptValue, redactFreeText, redactionKey, replacementOf } from './freeText/policy';
import { aggregateAgeOver89, reduceToYear, showsAgeOver89 } from './hipaa';
import {
  charsetsOf,
  containsIdentifying,
  DUMMY_DATE,
  DUMMY_DATE_TIME,
  DUMMY_TEXT,
  DUMMY_TIME,
  effectiveVr,
  identifyingMatchers,
  privateCreatorOf,
  scrubText,
  sourceFactsWork,
  textOf,
  ValueMatcher,
} from './identifying';
import { Profile, ProfileOption } from './profile';
import { dateShiftDays, pseudonym, ResearchPatientKey, researchPatientKey, researchUid, shiftDate, shiftDateTime } from './pseudonyms';
import { resolveAction, tableRowOf } from './resolve';

export interface DeidContext {
  profile: Profile;
  /** The HMAC key of every derivation; the same key gives the same research identifiers. */
  key: Buffer;
  /** Names the key in De-identification Method, so outputs can be traced to a key version. */
  keyId: string;
  /**
   * The free-text detector (freeText/): the local one when absent. With the cloud option, the
   * local one assisted by what the cloud recognizer found in this file (freeText/cloud.ts).
   */
  detector?: FreeTextDetector;
  /** The cloud option's recognizer; the caller (deidentifyInstance.ts) runs it before the engine and sets `detector`. */
  cloudPhi?: CloudPhiRecognizer;
}

export type DeidCounter =
  | 'removed'
  | 'emptied'
  | 'dummied'
  | 'replacedUid'
  | 'cleaned'
  | 'kept'
  | 'shifted'
  | 'pseudonymized'
  | 'privateRemoved'
  | 'privateKept';

export interface DeidReport {
  /** Elements per action, sequence items included. */
  actions: Record<DeidCounter, number>;
  /** PHI of the source (see identifying.ts), for the verification gate only: never log it. */
  identifyingValues: string[];
  /** Digests of the source values that had to disappear (see identifying.ts valueDigest). */
  sourceValueDigests: string[];
  research: { studyInstanceUid?: string; seriesInstanceUid?: string; sopInstanceUid?: string };
  /**
   * Redactions in free text (see freeText/), by "AttributeKeyword:kind": the detector's kinds
   * (freeText TextKind), and sourceValue where a value of the source's own or a numeric date
   * was scrubbed (identifying.ts scrubText). Counts, never values.
   */
  textRedactions: Record<string, number>;
  /** The source's PN values, for the gate's free-text detector only: PHI, never log them. */
  sourceNames: string[];
  /** Source UIDs: PHI-adjacent, for the catalog's private mapping only, never logs. */
  original: { studyInstanceUid?: string; seriesInstanceUid?: string; sopInstanceUid?: string; sopClassUid?: string };
}

/** PS3.16 CID 7050 De-identification Method codes (DCM). */
export const DEID_METHOD_CODES: readonly { option?: ProfileOption; code: string; meaning: string }[] = [
  { code: '113100', meaning: 'Basic Application Confidentiality Profile' },
  { option: 'cleanPixelData', code: '113101', meaning: 'Clean Pixel Data Option' },
  { option: 'cleanGraphics', code: '113103', meaning: 'Clean Graphics Option' },
  { option: 'cleanStructuredContent', code: '113104', meaning: 'Clean Structured Content Option' },
  { option: 'cleanDescriptors', code: '113105', meaning: 'Clean Descriptors Option' },
  { option: 'retainLongitudinalFullDates', code: '113106', meaning: 'Retain Longitudinal Temporal Information Full Dates Option' },
  { option: 'retainLongitudinalModifiedDates', code: '113107', meaning: 'Retain Longitudinal Temporal Information Modified Dates Option' },
  { option: 'retainPatientCharacteristics', code: '113108', meaning: 'Retain Patient Characteristics Option' },
  { option: 'retainDeviceIdentity', code: '113109', meaning: 'Retain Device Identity Option' },
  { option: 'retainUids', code: '113110', meaning: 'Retain UIDs Option' },
  { option: 'retainSafePrivate', code: '113111', meaning: 'Retain Safe Private Option' },
  { option: 'retainInstitutionIdentity', code: '113112', meaning: 'Retain Institution Identity Option' },
];

const FREE_TEXT_VRS = new Set(['LO', 'SH', 'UC', 'LT', 'ST', 'UT']);
/**
 * The coded-entry identifiers (Code Value, Coding Scheme Designator and Version, Long and URN
 * Code Value, Mapping Resource, Context Identifier): vocabulary, which Clean Structured Content
 * keeps (a digit run such as DCM 121049 is a code, not an MRN). Only the source's own values
 * are looked for in them.
 */
const CODED_ENTRY_TAGS: ReadonlySet<number> = new Set([Tags.CodeValue, Tags.CodingSchemeDesignator, Tags.CodingSchemeVersion, Tags.LongCodeValue, Tags.URNCodeValue, Tags.MappingResource, Tags.ContextIdentifier]);
const PSEUDONYM_KINDS: ReadonlySet<number> = new Set([Tags.PatientID, Tags.PatientName, Tags.AccessionNumber, Tags.StudyID]);
const BINARY_WIDTH: Record<string, number> = { US: 2, SS: 2, UL: 4, SL: 4, FL: 4, FD: 8, AT: 4, SV: 8, UV: 8 };

interface FileState {
  ctx: DeidContext;
  counts: Record<DeidCounter, number>;
  matchers: ValueMatcher[];
  /** The source's names in the spellings the free-text detector looks for. */
  names: SourceNames;
  textRedactions: Record<string, number>;
  patientId: string;
  /** What the research patient and the date shift are keyed on (pseudonyms.ts researchPatientKey). */
  patientKey: ResearchPatientKey;
  sopClassUid?: string;
  shiftDays?: number;
  /** Elements visited, for the slicing of long work. */
  steps: number;
}

interface Scope {
  charsets: string[];
  /** Inside a sequence being cleaned: every free-text value is scrubbed too. */
  cleanAll: boolean;
}

function newCounts(): Record<DeidCounter, number> {
  return { removed: 0, emptied: 0, dummied: 0, replacedUid: 0, cleaned: 0, kept: 0, shifted: 0, pseudonymized: 0, privateRemoved: 0, privateKept: 0 };
}

function setText(el: DicomElement, text: string, charsets: string[]): boolean {
  const vr = effectiveVr(el);
  let bytes: Uint8Array | undefined;
  if (TEXT_VRS.has(vr) && !FREE_TEXT_VRS.has(vr) && vr !== 'PN') bytes = encodeAsciiValue(text, vr);
  else bytes = encodeText(text, charsets);
  if (!bytes) return false;
  if (bytes.length % 2 === 1) bytes = Buffer.concat([bytes, Buffer.from([vr === 'UI' ? 0 : 0x20])]);
  el.value = bytes;
  delete el.items;
  delete el.encapsulated;
  return true;
}

function setEmpty(el: DicomElement): void {
  if (el.items) el.items = [];
  else el.value = new Uint8Array(0);
  delete el.encapsulated;
}

function mapUids(text: string, key: Buffer): string {
  return text
    .split('\\')
    .map((u) => {
      const uid = u.trim();
      // Standard UIDs (SOP classes, transfer syntaxes, coding schemes) are structural, not
      // instance-related (PS3.15 E.3.9 Note 4): replacing them would only break the file.
      if (uid === '' || uid.startsWith('1.2.840.10008.')) return uid;
      return researchUid(key, uid);
    })
    .join('\\');
}

function dummyText(vr: string): string {
  switch (vr) {
    case 'DA':
      return DUMMY_DATE;
    case 'TM':
      return DUMMY_TIME;
    case 'DT':
      return DUMMY_DATE_TIME;
    case 'DS':
    case 'IS':
      return '0';
    case 'AS':
      return '000Y';
    case 'UR':
      return 'urn:anonymized';
    default:
      return DUMMY_TEXT;
  }
}

/** The Verifying Observer Sequence and the attributes of its items (SR Document General module). */
export const VerifyingObserver = {
  Sequence: Tags.VerifyingObserverSequence,
  Organization: Tags.VerifyingOrganization,
  DateTime: Tags.VerificationDateTime,
  Name: Tags.VerifyingObserverName,
  IdentificationCodeSequence: Tags.VerifyingObserverIdentificationCodeSequence,
} as const;

/** CONTAINS TEXT (DCM 121106 "Comment") = "ANONYMIZED": a minimal valid SR content item. */
function dummyContentItem(charsets: string[]): DicomDataset {
  const put = (ds: DicomDataset, tag: number, vr: string, value: string) => {
    const e: DicomElement = { tag, vr };
    setText(e, value, charsets);
    ds.set(tag, e);
  };
  const code: DicomDataset = new Map();
  put(code, Tags.CodeValue, 'SH', '121106');
  put(code, Tags.CodingSchemeDesignator, 'SH', 'DCM');
  put(code, Tags.CodeMeaning, 'LO', 'Comment');
  const item: DicomDataset = new Map();
  put(item, Tags.RelationshipType, 'CS', 'CONTAINS');
  put(item, Tags.ValueType, 'CS', 'TEXT');
  item.set(Tags.ConceptNameCodeSequence, { tag: Tags.ConceptNameCodeSequence, vr: 'SQ', items: [code] });
  put(item, Tags.TextValue, 'UT', DUMMY_TEXT);
  return item;
}

/**
 * A Verifying Observer item with every attribute the SR Document General module asks of it:
 * Verifying Observer Name and Verifying Organization (Type 1) dummies, Verification DateTime
 * (Type 1) the dummy date-time, Verifying Observer Identification Code Sequence (Type 2) empty.
 * None of it comes from the source.
 */
function dummyVerifyingObserverItem(charsets: string[]): DicomDataset {
  const item: DicomDataset = new Map();
  const put = (tag: number, vr: string, value: string) => {
    const e: DicomElement = { tag, vr };
    setText(e, value, charsets);
    item.set(tag, e);
  };
  put(VerifyingObserver.Organization, 'LO', DUMMY_TEXT);
  put(VerifyingObserver.DateTime, 'DT', DUMMY_DATE_TIME);
  put(VerifyingObserver.Name, 'PN', DUMMY_TEXT);
  item.set(VerifyingObserver.IdentificationCodeSequence, { tag: VerifyingObserver.IdentificationCodeSequence, vr: 'SQ', items: [] });
  return item;
}

function dummyItem(tag: number, charsets: string[]): DicomDataset {
  if (tag === Tags.ContentSequence) return dummyContentItem(charsets);
  if (tag === VerifyingObserver.Sequence) return dummyVerifyingObserverItem(charsets);
  return new Map();
}

function applyDummy(el: DicomElement, st: FileState, scope: Scope): void {
  const vr = effectiveVr(el);
  if (vr === 'SQ') {
    // A sequence dummy: one item, the least a Type 1 sequence can hold. For SR content the
    // item is a complete TEXT content item, for a Verifying Observer a complete observer
    // (their Type 1 attributes present), so the document stays valid while none of the
    // source's content survives.
    el.items = [dummyItem(el.tag, scope.charsets)];
    delete el.value;
    return;
  }
  if (vr === 'UI') {
    const source = textOf(el, scope.charsets);
    setText(el, mapUids(source === '' ? `dummy:${tagToHex(el.tag)}` : source, st.ctx.key), scope.charsets);
    return;
  }
  if (TEXT_VRS.has(vr) || vr === 'PN') {
    setText(el, dummyText(vr), scope.charsets);
    return;
  }
  const width = BINARY_WIDTH[vr] ?? 2;
  const length = Math.max(width, el.value?.length ?? 0);
  el.value = new Uint8Array(length + (length % 2));
  delete el.encapsulated;
}

function shiftDaysOf(st: FileState): number {
  st.shiftDays ??= dateShiftDays(st.ctx.key, st.patientKey.value, st.patientKey.scope);
  return st.shiftDays;
}

/** Shifts a DA or DT; a TM is kept, since whole-day shifts leave the time of day alone. */
function applyShift(el: DicomElement, st: FileState, scope: Scope): 'shifted' | 'emptied' | 'removed' {
  const vr = effectiveVr(el);
  const text = textOf(el, scope.charsets);
  if (vr === 'TM' || text === '') return 'shifted';
  let shifted: string | undefined;
  if (vr === 'DA') shifted = shiftDate(text, shiftDaysOf(st));
  else if (vr === 'DT') shifted = shiftDateTime(text, shiftDaysOf(st));
  else if (TEXT_VRS.has(vr)) return cleanValue(el, st, scope) ? 'shifted' : 'emptied';
  else return 'removed'; // binary timestamps (OB) cannot be shifted safely
  if (shifted === undefined) {
    // Not a parsable date: the original must not survive, and there is nothing to shift.
    setEmpty(el);
    return 'emptied';
  }
  setText(el, shifted, scope.charsets);
  return 'shifted';
}

/** Scrubs a text value; false when the value had to be emptied instead. */
function cleanValue(el: DicomElement, st: FileState, scope: Scope): boolean {
  const vr = effectiveVr(el);
  if (!el.value || el.value.length === 0) return true;
  // ISO 2022 escapes switch character sets mid-value: free text is cut in its own bytes (see
  // freeText/iso2022.ts); anything else with escapes is emptied, as is what cannot be cut.
  if (el.value.includes(0x1b)) {
    if (DETECTED_VRS.has(vr) && cleanEscapedText(el, st, scope)) return true;
    setEmpty(el);
    return false;
  }
  const text = textOf(el, scope.charsets);
  if (vr === 'PN') return setText(el, DUMMY_TEXT, scope.charsets);
  if (vr === 'UI') return setText(el, mapUids(text, st.ctx.key), scope.charsets);
  if (vr === 'DS' || vr === 'IS') {
    if (/^[\s0-9+\-.eE\\]*$/.test(text)) return true;
    setEmpty(el);
    return false;
  }
  if (vr === 'CS') {
    if (/^[A-Z0-9 _\\]*$/.test(text) && scrubText(text, st.matchers) === text) return true;
    setEmpty(el);
    return false;
  }
  if (vr === 'AS') {
    if (/^\d{3}[DWMY]$/.test(text)) return true;
    setEmpty(el);
    return false;
  }
  const scrubbed = scrubText(text, st.matchers);
  if (scrubbed !== text) countRedaction(st, el.tag, 'sourceValue');
  const cleaned = scrubbed === undefined || !DETECTED_VRS.has(vr) ? scrubbed : detectAndRedact(scrubbed, el.tag, vr, st);
  if (cleaned === text) return true;
  if (cleaned === undefined || !setText(el, cleaned, scope.charsets)) {
    setEmpty(el);
    return false;
  }
  return true;
}

function countRedaction(st: FileState, tag: number, kind: Parameters<typeof redactionKey>[1]): void {
  const key = redactionKey(tag, kind);
  st.textRedactions[key] = (st.textRedactions[key] ?? 0) + 1;
}

/** The free-text detector over one text value: the text with each span redacted, counted by kind. */
function detectAndRedact(text: string, tag: number, vr: string, st: FileState): string {
  const result = redactFreeText(text, { detector: st.ctx.detector, context: { names: st.names }, vr, mapUid: (uid) => researchUid(st.ctx.key, uid) });
  for (const span of result.spans) countRedaction(st, tag, span.kind);
  return result.text;
}

/**
 * A free-text value with ISO 2022 escapes: the source's values and the detector's spans cut out
 * of its bytes. False when it cannot be done safely (the caller empties the value).
 */
function cleanEscapedText(el: DicomElement, st: FileState, scope: Scope): boolean {
  const vr = effectiveVr(el);
  const bytes = el.value ?? new Uint8Array(0);
  const text = decodeText(bytes, scope.charsets, vr);
  const spans = (st.ctx.detector ?? localDetector).detect(text, { names: st.names });
  const own = sourceValueSpans(text, st.matchers);
  if (own.length > 0) countRedaction(st, el.tag, 'sourceValue');
  for (const span of spans) countRedaction(st, el.tag, span.kind);
  const all = [...spans, ...own.map((o) => ({ ...o, kind: 'name' as const }))].sort((a, b) => a.start - b.start || b.end - a.end);
  const merged: { start: number; end: number; kind: (typeof all)[number]['kind'] }[] = [];
  for (const s of all) {
    const last = merged[merged.length - 1];
    if (last && s.start < last.end) last.end = Math.max(last.end, s.end);
    else merged.push({ ...s });
  }
  if (merged.length === 0) return true;
  const cut = redactIso2022(bytes, scope.charsets, vr, merged, (start, end) => {
    const span = merged.find((m) => m.start === start && m.end === end);
    return span ? replacementOf(span, text.slice(start, end), (uid) => researchUid(st.ctx.key, uid)) : REDACTED;
  });
  if (!cut) return false;
  el.value = cut.length % 2 === 1 ? Buffer.concat([cut, Buffer.from([0x20])]) : cut;
  return true;
}

/** Where the source's identifying values occur in a text (what scrubText removes). */
function sourceValueSpans(text: string, matchers: readonly ValueMatcher[]): { start: number; end: number }[] {
  const spans: { start: number; end: number }[] = [];
  for (const m of matchers) {
    if (!m.test(text)) continue;
    const re = m.regex;
    re.lastIndex = 0;
    for (const hit of text.matchAll(re)) spans.push({ start: hit.index ?? 0, end: (hit.index ?? 0) + hit[0].length });
  }
  return spans;
}

/**
 * The VRs of an attribute outside Table E.1-1 that are looked at for the source's values: those
 * the gate's identifying-value search checks (verify.ts leaves codes and number strings alone).
 */
function isUnlistedChecked(vr: string): boolean {
  return (TEXT_VRS.has(vr) || vr === 'PN') && vr !== 'CS' && vr !== 'DS' && vr !== 'IS';
}

/** True when a kept value holds one of the source's identifying values (what the gate would find). */
function holdsSourceValue(el: DicomElement, vr: string, st: FileState, scope: Scope): boolean {
  if (!isUnlistedChecked(vr) || !el.value || el.value.length === 0) return false;
  return containsIdentifying(textOf(el, scope.charsets), st.matchers);
}

/**
 * A public attribute the table does not list (kept as is) that holds a value of the source (a
 * patient's name in Manufacturer, the source instance UID in Multi-frame Source SOP Instance
 * UID): the value is cleaned per VR as a C action would (the span cut out of text, a name
 * replaced, a UID mapped to its research UID), so the file is written instead of quarantined.
 * The gate checks it again. Counted as a sourceValue redaction of the attribute.
 */
function cleanUnlistedValue(el: DicomElement, st: FileState, scope: Scope): DeidCounter {
  const vr = effectiveVr(el);
  const key = redactionKey(el.tag, 'sourceValue');
  const counted = st.textRedactions[key] ?? 0;
  let outcome: DeidCounter = 'cleaned';
  if (!cleanValue(el, st, scope)) outcome = DETECTED_VRS.has(vr) && setText(el, REDACTED, scope.charsets) ? 'cleaned' : 'emptied';
  if ((st.textRedactions[key] ?? 0) === counted) countRedaction(st, el.tag, 'sourceValue');
  return outcome;
}

/** Every PN value of the data set, items included, as text. */
function personNamesOf(ds: DicomDataset, charsets: string[], out: string[]): string[] {
  const cs = charsetsOf(ds, charsets);
  for (const el of ds.values()) {
    if (el.items) for (const item of el.items) personNamesOf(item, cs, out);
    else if (effectiveVr(el) === 'PN' && el.value && el.value.length > 0) out.push(textOf(el, cs));
  }
  return out;
}

function pseudonymFor(el: DicomElement, own: DicomDataset, st: FileState, scope: Scope, fromOverride: boolean): string {
  const value = textOf(el, scope.charsets);
  if (value === '') return '';
  const ownText = (tag: number) => {
    const e = own.get(tag);
    return e ? textOf(e, scope.charsets) : undefined;
  };
  // The file's own patient is the research patient (issuer ignored, see researchPatientKey);
  // another ID (in Other Patient IDs, say) is keyed on its value alone.
  const patient = (id: string) =>
    id === st.patientId ? pseudonym(st.ctx.key, 'patient', st.patientKey.value, st.patientKey.scope) : pseudonym(st.ctx.key, 'patient', id);
  if (fromOverride && !PSEUDONYM_KINDS.has(el.tag)) return pseudonym(st.ctx.key, 'other', value, tagToHex(el.tag));
  switch (el.tag) {
    case Tags.PatientID:
      return patient(value);
    case Tags.PatientName: {
      // The patient's pseudonym doubles as the name, so research keeps one label per patient.
      const id = ownText(Tags.PatientID) ?? st.patientId;
      return id === '' && st.patientKey.value === '' ? '' : patient(id);
    }
    case Tags.AccessionNumber:
      return pseudonym(st.ctx.key, 'accession', value);
    case Tags.StudyID:
      // Study IDs are small numbers unique within a patient at best: scope them by the research patient.
      return pseudonym(st.ctx.key, 'study-id', value, `${st.patientKey.scope}\0${st.patientKey.value}`);
    default:
      return pseudonym(st.ctx.key, 'other', value, tagToHex(el.tag));
  }
}

/** Applies the profile to one data set; a generator so that a large header is worked in slices (see limits.ts runSliced). */
function* processDataset(ds: DicomDataset, st: FileState, parentScope: Scope): Generator<void, void> {
  // An item counts as a step too: a sequence of 25,000 empty items is work without elements.
  if (++st.steps % STEPS_PER_CHECK === 0) yield;
  const scope: Scope = { charsets: charsetsOf(ds, parentScope.charsets), cleanAll: parentScope.cleanAll };
  // Read before anything changes: pseudonyms of this item depend on its own identifiers.
  const snapshot: DicomDataset = new Map();
  for (const t of [Tags.PatientID, Tags.IssuerOfPatientID]) {
    const el = ds.get(t);
    if (el) snapshot.set(t, { ...el });
  }
  const pendingCreators: number[] = [];
  const tags = [...ds.keys()].sort((a, b) => a - b);
  for (const tag of tags) {
    if (++st.steps % STEPS_PER_CHECK === 0) yield;
    const el = ds.get(tag);
    if (!el) continue;
    const isPrivate = isPrivateTag(tag);
    const vr = effectiveVr(el);
    const resolved = resolveAction(tag, st.ctx.profile, { vr, privateCreator: privateCreatorOf(ds, tag, scope.charsets), sopClassUid: st.sopClassUid });
    const count = (c: DeidCounter) => {
      st.counts[isPrivate ? (c === 'removed' ? 'privateRemoved' : 'privateKept') : c]++;
    };
    switch (resolved.action) {
      case 'keepIfBlockKept':
        pendingCreators.push(tag);
        break;
      case 'keep':
        if (el.items) {
          for (const item of el.items) yield* processDataset(item, st, scope);
          count('kept');
        } else if (scope.cleanAll && !isPrivate && CODED_ENTRY_TAGS.has(tag)) {
          if (el.value?.includes(0x1b) || scrubText(textOf(el, scope.charsets), st.matchers) !== textOf(el, scope.charsets)) {
            setEmpty(el);
            count('emptied');
          } else count('kept');
        } else if ((scope.cleanAll && !isPrivate && (FREE_TEXT_VRS.has(vr) || vr === 'PN')) || (!isPrivate && detectsKeptValue(tag, vr, resolved))) {
          // Text the profile keeps still goes through the free-text detector (freeText/policy.ts).
          // Where nothing is left, the placeholder stands in: a kept text is often Type 1
          // (an SR TextValue), and an empty one would break the document.
          const before = el.value;
          if (cleanValue(el, st, scope)) count(before === el.value ? 'kept' : 'cleaned');
          else if (DETECTED_VRS.has(vr) && setText(el, REDACTED, scope.charsets)) count('cleaned');
          else count('emptied');
        } else if (!isPrivate && resolved.source === 'not-listed' && holdsSourceValue(el, vr, st, scope)) {
          count(cleanUnlistedValue(el, st, scope));
        } else {
          count('kept');
        }
        break;
      case 'remove':
        ds.delete(tag);
        count('removed');
        break;
      case 'empty':
        setEmpty(el);
        count('emptied');
        break;
      case 'dummy':
        applyDummy(el, st, scope);
        count('dummied');
        break;
      case 'replaceUid':
        if (el.items) {
          for (const item of el.items) yield* processDataset(item, st, scope);
        } else {
          const text = textOf(el, scope.charsets);
          if (text !== '') setText(el, mapUids(text, st.ctx.key), scope.charsets);
        }
        count(isPrivate ? 'kept' : 'replacedUid');
        break;
      case 'clean':
        if (el.items) {
          // PS3.15 E.1.1: cleaning a sequence applies the profile to every item recursively;
          // free text inside it is scrubbed as well.
          for (const item of el.items) yield* processDataset(item, st, { ...scope, cleanAll: true });
          count('cleaned');
        } else if (TEXT_VRS.has(vr) || vr === 'PN') {
          if (cleanValue(el, st, scope)) count('cleaned');
          else if (tableRowOf(tag)?.basicProfile === 'D') {
            // Basic asks for a dummy where the attribute must keep a value (Type 1, such as
            // Structure Set Label); a clean that leaves nothing must not do worse than Basic.
            applyDummy(el, st, scope);
            count('dummied');
          } else count('emptied');
        } else {
          // Bitmaps and binary data (overlays, curves) cannot be cleaned without looking at them.
          ds.delete(tag);
          count('removed');
        }
        break;
      case 'shift': {
        const outcome = applyShift(el, st, scope);
        if (outcome === 'removed') ds.delete(tag);
        count(outcome);
        break;
      }
      case 'pseudonymize': {
        const p = pseudonymFor(el, snapshot, st, scope, resolved.source === 'override');
        if (p === '') {
          setEmpty(el);
          count('emptied');
        } else {
          setText(el, p, scope.charsets);
          count('pseudonymized');
        }
        break;
      }
      case 'replace':
        if (!setText(el, resolved.value ?? '', scope.charsets)) setEmpty(el);
        count('dummied');
        break;
      case 'year': {
        const text = textOf(el, scope.charsets);
        const year = text === '' ? '' : reduceToYear(text, vr === 'DT' ? 'DT' : 'DA');
        // A value without a readable year must not survive as it was.
        if (year === undefined || year === '' || !setText(el, year, scope.charsets)) setEmpty(el);
        count(year ? 'shifted' : 'emptied');
        break;
      }
    }
  }
  // One pass over the elements, not one per creator: a file may hold thousands of creators.
  const usedBlocks = new Set<number>();
  if (pendingCreators.length > 0) {
    for (const t of ds.keys()) {
      if (isPrivateTag(t) && !isPrivateCreatorTag(t) && (t & 0xffff) >= 0x1000) usedBlocks.add(((t >>> 16) << 8) | ((t >>> 8) & 0xff));
    }
  }
  for (const creatorTag of pendingCreators) {
    const used = usedBlocks.has(((creatorTag >>> 16) << 8) | (creatorTag & 0xff));
    if (used) {
      st.counts.privateKept++;
    } else {
      ds.delete(creatorTag);
      st.counts.privateRemoved++;
    }
  }
}

function textElement(tag: number, vr: string, text: string): DicomElement {
  return { tag, vr, value: encodeAsciiValue(text, vr) };
}

/** PS3.15 E.1.1 items 6 and E.3.6: what was done, written into the data set itself. */
function mark(ds: DicomDataset, ctx: DeidContext): void {
  const { profile } = ctx;
  ds.set(Tags.PatientIdentityRemoved, textElement(Tags.PatientIdentityRemoved, 'CS', 'YES'));
  const method = `${profile.name} ${profile.version}; key ${ctx.keyId}`.replace(/[\\\0]/g, ' ').slice(0, 64);
  ds.set(Tags.DeidentificationMethod, textElement(Tags.DeidentificationMethod, 'LO', method));
  const items = DEID_METHOD_CODES.filter((c) => c.option === undefined || profile.options.has(c.option)).map((c) => {
    const item: DicomDataset = new Map();
    item.set(Tags.CodeValue, textElement(Tags.CodeValue, 'SH', c.code));
    item.set(Tags.CodingSchemeDesignator, textElement(Tags.CodingSchemeDesignator, 'SH', 'DCM'));
    item.set(Tags.CodeMeaning, textElement(Tags.CodeMeaning, 'LO', c.meaning));
    return item;
  });
  ds.set(Tags.DeidentificationMethodCodeSequence, { tag: Tags.DeidentificationMethodCodeSequence, vr: 'SQ', items });
  const ltim = Tags.LongitudinalTemporalInformationModified;
  if (profile.options.has('retainLongitudinalModifiedDates')) ds.set(ltim, textElement(ltim, 'CS', 'MODIFIED'));
  else if (profile.options.has('retainLongitudinalFullDates')) ds.set(ltim, textElement(ltim, 'CS', 'UNMODIFIED'));
  // Dates reduced to the year are still there, but not as they were (C.7.1.4.1.1: MODIFIED).
  else if (profile.dates === 'year') ds.set(ltim, textElement(ltim, 'CS', 'MODIFIED'));
  // Without a date option the dates are gone; a value left from the source would claim otherwise.
  else ds.delete(ltim);
}

function uidOf(ds: DicomDataset, tag: number): string | undefined {
  const v = asciiValue(ds.get(tag));
  return v === undefined || v === '' ? undefined : v;
}

/**
 * De-identifies one data set in place (the caller hands in its own copy) and reports what
 * was done. The file meta group is not part of `dataset`: the writer rebuilds it from the
 * research SOP Class and Instance UIDs.
 *
 * Deterministic and idempotent for a given key and source: the same source always yields
 * the same output. Does not throw for content; a value that cannot be processed safely is
 * emptied or removed instead.
 */
export function deidentifyDataset(dataset: DicomDataset, ctx: DeidContext): DeidReport {
  return runToEnd(deidentifyWork(dataset, ctx));
}

/**
 * deidentifyDataset, giving the event loop a turn every SLICE_MS (see limits.ts), so that a
 * large header does not stall the other files in flight. Same result, same errors.
 */
export function deidentifyDatasetSliced(dataset: DicomDataset, ctx: DeidContext): Promise<DeidReport> {
  return runSliced(deidentifyWork(dataset, ctx));
}

function* deidentifyWork(dataset: DicomDataset, ctx: DeidContext): Generator<void, DeidReport> {
  const original = {
    studyInstanceUid: uidOf(dataset, Tags.StudyInstanceUID),
    seriesInstanceUid: uidOf(dataset, Tags.SeriesInstanceUID),
    sopInstanceUid: uidOf(dataset, Tags.SOPInstanceUID),
    sopClassUid: uidOf(dataset, Tags.SOPClassUID),
  };
  const charsets = charsetsOf(dataset);
  const facts = yield* sourceFactsWork(dataset, ctx.profile);
  const sourceNameValues = personNamesOf(dataset, [], []);
  const idEl = dataset.get(Tags.PatientID);
  const patientId = idEl ? textOf(idEl, charsets) : '';
  const st: FileState = {
    ctx,
    counts: newCounts(),
    matchers: identifyingMatchers(facts.identifyingValues),
    names: sourceNames(sourceNameValues),
    textRedactions: {},
    patientId,
    patientKey: researchPatientKey(ctx.profile.researchPatient, patientId, original.studyInstanceUid),
    sopClassUid: original.sopClassUid,
    steps: 0,
  };
  const ageOver89 = ctx.profile.agesOver89 !== 'keep' && showsAgeOver89(dataset);
  yield* processDataset(dataset, st, { charsets, cleanAll: false });
  if (ageOver89) st.counts.cleaned += aggregateAgeOver89(dataset);
  mark(dataset, ctx);
  return {
    actions: st.counts,
    identifyingValues: facts.identifyingValues,
    sourceValueDigests: facts.sourceValueDigests,
    textRedactions: st.textRedactions,
    sourceNames: sourceNameValues,
    research: {
      studyInstanceUid: uidOf(dataset, Tags.StudyInstanceUID),
      seriesInstanceUid: uidOf(dataset, Tags.SeriesInstanceUID),
      sopInstanceUid: uidOf(dataset, Tags.SOPInstanceUID),
    },
    original,
  };
}
