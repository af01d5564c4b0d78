/**
 * The source's identifying values: collected before de-identification, used to clean free
 * text (Clean Descriptors and the other C actions) and by the verification gate, which checks
 * that none of them is left anywhere in the output. They are PHI: held in memory, never logged.
 *
 * What counts (public attributes whose value the profile makes disappear, including
 * everything inside a sequence that is removed, emptied or replaced):
 * - PN values, each whole name and each name component of 3 characters or more (honorifics
 *   and suffixes such as DR, MR, JR, III, and words that mark a name as a placeholder, such
 *   as TEST or PATIENT, excepted: "Test^Patient" names nobody, and the whole name is still
 *   searched);
 * - DA values and the date part of DT values;
 * - non-standard UIDs that are replaced or removed, except those naming a vocabulary (Coding
 *   Scheme UID and its kin: a registered scheme is the same in every file, and a code taken
 *   from a removed sequence is kept unchanged wherever else the file uses it);
 * - LO, SH, UC, LT, ST, UT values of identifier-like attributes: IDs, numbers, names of
 *   people, institutions, stations and devices, addresses, telephone numbers.
 * Values shorter than 3 characters, all-digit values shorter than 5 digits (other than
 * dates), and values equal to the engine's own dummy values are left out, because they
 * would match by chance ("M", "1", "123" are everywhere) and prove nothing.
 *
 * Strict and excusable values: the patient's own identity (the patient's names, patient
 * and other patient IDs, issuers, accession numbers, Study ID, admission and insurance
 * numbers), every date and every UID always count, unless an option retains them (below).
 * Everything else (names of staff and other people, institutions, stations, devices) does
 * not count when the same text also occurs in an attribute the profile keeps as is: the
 * profile itself puts that text into the output
 * (an institution named like the manufacturer, a content creator named in the manufacturer's
 * URL), so finding it there says nothing about the engine and would fail every such file.
 *
 * Retained categories: an option that retains a category keeps its values as they are
 * (Retain UIDs: UIDs; Retain Longitudinal Temporal Information Full Dates: dates and times;
 * Retain Institution Identity: institution names, departments, addresses and the issuers that
 * name the institution). A strict source value of that category (a UID, a date, an issuer or
 * institution value) does not count when it occurs verbatim as, or inside, a value the
 * profile keeps for that option: a whole UID of a UID attribute kept by Retain UIDs, the date
 * of a DA or DT kept by Full Dates, a word or phrase of a text kept by Retain Institution
 * Identity. Under Retain UIDs the same holds for an all-digit accession number, Study ID or
 * admission ID that is a whole component of a kept UID (UID generators build study UIDs from
 * them). The profile chose to put that value into the output, so its copy in a removed
 * sequence or an emptied attribute reveals nothing more. The attribute the table empties or
 * removes is still checked for its own source value (the digest check), and a value the
 * source also holds in an attribute of another category (a patient ID equal to an issuer)
 * stays strict. Patient names and IDs are never excused; a birth date only under Full Dates
 * and only when it equals a date the option keeps: the birth date itself is still emptied as
 * the table asks, and what is excused is the coincidence of a kept date with the same value.
 * Under Retain UIDs the verification gate also does not look for dates inside a UID the option
 * keeps (UIDs often embed the date they were made): the option keeps the UID as is.
 *
 * Matching is case-insensitive and at word boundaries: a value starting with a letter is not
 * matched after a letter, one starting with a digit not after a digit, and likewise at the
 * end, so "ANN" does not match inside "SCANNER" and "12345" not inside "0.123456". A dotted
 * number (a UID) is matched only whole, so "1.1" is not found inside "1.2.840.10008.5.1.4.1.1.6.1".
 */
import { createHash } from 'node:crypto';

import { decodeText, parseSpecificCharacterSet } from '../charset';
import { asciiValue, DicomDataset, DicomElement } from '../dataset';
import { isPrivateTag, lookupTag, tagToHex } from '../dictionary';
import { runToEnd, STEPS_PER_CHECK } from '../limits';
import { Tags } from '../tags';
import { Profile, ProfileOption } from './profile';
import { DeidAction, resolveAction, ResolvedAction } from './resolve';

/** Text the engine writes in place of a value; never counted as identifying. */
export const DUMMY_TEXT = 'ANONYMIZED';
export const DUMMY_DATE = '19000101';
export const DUMMY_TIME = '000000';
export const DUMMY_DATE_TIME = '19000101000000';
const DUMMIES = new Set([DUMMY_TEXT, DUMMY_DATE, DUMMY_TIME, DUMMY_DATE_TIME, 'YES', 'NO', 'MODIFIED', 'UNMODIFIED']);

const NAME_STOP_WORDS = new Set(['DR', 'DR.', 'MR', 'MR.', 'MRS', 'MRS.', 'MS', 'MS.', 'PROF', 'PROF.', 'JR', 'JR.', 'SR', 'SR.', 'II', 'III', 'IV', 'MD', 'PHD']);
/**
 * Words that stand in for a name rather than being one (test data, phantoms, unknown
 * patients); on their own they name nobody and occur in kept device and software values
 * ("Test Manufacturer"). Only single components are skipped, never a whole name.
 */
const PLACEHOLDER_NAME_WORDS = new Set(['TEST', 'PATIENT', 'PHANTOM', 'ANONYMOUS', 'UNKNOWN', 'NAME', 'FIRST', 'LAST', 'MIDDLE']);

/** UIDs that name a coding scheme, context group or mapping resource: vocabulary, not instances. */
const VOCABULARY_UID_KEYWORDS = new Set(['CodingSchemeUID', 'ContextGroupExtensionCreatorUID', 'ContextUID', 'MappingResourceUID']);

const FREE_TEXT_VRS = new Set(['LO', 'SH', 'UC', 'LT', 'ST', 'UT']);
const IDENTIFIER_KEYWORD = /(?:ID|IDs|Number|Numbers|Name|Names|Address|Identifier|Telephone|TelephoneNumbers|Locator|Residence|Organization|Institution|Department)$/;
const NOT_IDENTIFIER_KEYWORD = /Protocol|Coil|Description|Code|Sequence|Label|Type|Manufacturer|Model/;

/** Actions after which the source value must not be seen again. */
const DISAPPEARING: ReadonlySet<DeidAction> = new Set(['remove', 'empty', 'dummy', 'replaceUid', 'shift', 'pseudonymize', 'replace']);

/** The Specific Character Set terms that apply to a data set (inherited into items without one). */
export function charsetsOf(ds: DicomDataset, inherited: string[] = []): string[] {
  const el = ds.get(Tags.SpecificCharacterSet);
  return el ? parseSpecificCharacterSet(asciiValue(el)) : inherited;
}

/** The value as Unicode text with DICOM padding removed. */
export function textOf(el: DicomElement, charsets: string[]): string {
  if (!el.value || el.value.length === 0) return '';
  return decodeText(el.value, charsets, el.vr).replace(/[\0 ]+$/, '').replace(/^ +/, '');
}

/** The VR the rules should see: the dictionary's for public elements the file left as UN. */
export function effectiveVr(el: DicomElement): string {
  if (el.items) return 'SQ';
  if (el.vr === 'UN' && !isPrivateTag(el.tag)) return lookupTag(el.tag)?.vr ?? 'UN';
  return el.vr;
}

/** The Private Creator of a private element's block in the same data set. */
export function privateCreatorOf(ds: DicomDataset, tag: number, charsets: string[]): string | undefined {
  const el = tag & 0xffff;
  if (!isPrivateTag(tag) || el < 0x1000) return undefined;
  const creatorTag = ((tag & 0xffff0000) | (el >>> 8)) >>> 0;
  const creator = ds.get(creatorTag);
  return creator ? textOf(creator, charsets) : undefined;
}

function isStandardUid(uid: string): boolean {
  return uid.startsWith('1.2.840.10008.');
}

function isWorthMatching(v: string): boolean {
  if (v.length < 3 || DUMMIES.has(v.toUpperCase())) return false;
  if (/^\d+$/.test(v) && v.length < 5) return false;
  return /[\p{L}\p{N}]/u.test(v);
}

/** Identifiers of the patient and the visit: never excused by a kept attribute (see collectSourceFacts). */
const PATIENT_IDENTIFIER_KEYWORD = /^(?:Patient|OtherPatient|Accession|StudyID|Admission|MedicalRecord|Issuer|Military|Insurance)/;
/** The patient's own names (and the responsible person's, which names the patient's family): never excused. */
const PATIENT_NAME_KEYWORD = /^(?:Patient|OtherPatient|ResponsiblePerson)/;

/** What an option retains as is: the categories of values it may excuse (see the header). */
type RetainedCategory = 'uid' | 'date' | 'institution';
/**
 * Numbers of the visit (accession number, Study ID, admission ID) that UID generators build
 * study UIDs from: under Retain UIDs, one that is a whole component of a kept UID is in the
 * output as part of that UID, whatever else happens to it.
 */
type ValueCategory = RetainedCategory | 'visit' | 'other';
const VISIT_NUMBER_KEYWORD = /^(?:AccessionNumber|StudyID|AdmissionID)$/;
const RETAINED_CATEGORY: ReadonlyMap<ProfileOption, RetainedCategory> = new Map<ProfileOption, RetainedCategory>([
  ['retainUids', 'uid'],
  ['retainLongitudinalFullDates', 'date'],
  ['retainInstitutionIdentity', 'institution'],
]);
const INSTITUTION_KEYWORD = /^(?:Institution|Issuer)|Department/;

/** The category of a value collected from an attribute; 'other' is never excused by a retain option. */
function categoryOf(vr: string, keyword: string): ValueCategory {
  if (vr === 'UI') return 'uid';
  if (FREE_TEXT_VRS.has(vr) && VISIT_NUMBER_KEYWORD.test(keyword)) return 'visit';
  if (vr === 'DA' || vr === 'DT') return 'date';
  if (FREE_TEXT_VRS.has(vr) && INSTITUTION_KEYWORD.test(keyword)) return 'institution';
  return 'other';
}

/**
 * The option under which the profile keeps this attribute as is, when that option retains a
 * category and the attribute is of it (a sequence the option keeps passes its option on).
 */
function retainingOption(resolved: ResolvedAction, vr: string, inherited: ProfileOption | undefined): ProfileOption | undefined {
  if (resolved.action !== 'keep') return undefined;
  const option = resolved.option !== undefined && RETAINED_CATEGORY.has(resolved.option) ? resolved.option : inherited;
  const category = option === undefined ? undefined : RETAINED_CATEGORY.get(option);
  if (category === 'uid') return vr === 'UI' ? option : undefined;
  if (category === 'date') return vr === 'DA' || vr === 'DT' ? option : undefined;
  return category === 'institution' && (FREE_TEXT_VRS.has(vr) || vr === 'SQ') ? option : undefined;
}

/** True for an eight-digit value that reads as a calendar date of the last two centuries. */
export function isPlausibleDate(v: string): boolean {
  return /^(?:1[89]|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])$/.test(v);
}

function addValuesOf(el: DicomElement, text: string, out: Set<string>, weak: Set<string>, categories: Map<string, Set<ValueCategory>>): void {
  const vr = effectiveVr(el);
  const keyword = lookupTag(el.tag)?.keyword ?? '';
  const category = categoryOf(vr, keyword);
  const add = (set: Set<string>, v: string) => {
    set.add(v);
    // Only strict values can be excused by category; weak ones have their own excuse.
    if (set !== out) return;
    const seen = categories.get(v);
    if (seen) seen.add(category);
    else categories.set(v, new Set([category]));
  };
  for (const v of text.split('\\').map((s) => s.trim())) {
    if (v === '') continue;
    if (vr === 'PN') {
      const names = PATIENT_NAME_KEYWORD.test(keyword) ? out : weak;
      for (const group of v.split('=')) {
        const whole = group.replace(/\^+$/, '');
        if (isWorthMatching(whole)) add(names, whole);
        const spaced = whole.split('^').filter((c) => c.trim() !== '').join(' ');
        if (spaced !== whole && isWorthMatching(spaced)) add(names, spaced);
        for (const part of whole.split(/[\^ ,]+/)) {
          const upper = part.toUpperCase();
          if (isWorthMatching(part) && !NAME_STOP_WORDS.has(upper) && !PLACEHOLDER_NAME_WORDS.has(upper)) add(names, part);
        }
      }
    } else if (vr === 'DA') {
      if (/^\d{8}$/.test(v) && !DUMMIES.has(v)) add(out, v);
    } else if (vr === 'DT') {
      const date = v.slice(0, 8);
      if (/^\d{8}$/.test(date) && !DUMMIES.has(date)) add(out, date);
    } else if (vr === 'UI') {
      if (!isStandardUid(v) && v.length >= 3 && !VOCABULARY_UID_KEYWORDS.has(keyword)) add(out, v);
    } else if (FREE_TEXT_VRS.has(vr)) {
      if (IDENTIFIER_KEYWORD.test(keyword) && !NOT_IDENTIFIER_KEYWORD.test(keyword) && isWorthMatching(v)) {
        add(PATIENT_IDENTIFIER_KEYWORD.test(keyword) ? out : weak, v);
      }
    }
  }
}

/** The tag path of an element: its tags from the top, "GGGGEEEE.GGGGEEEE" (item numbers left out). */
export function tagPath(path: string, tag: number): string {
  return path === '' ? tagToHex(tag) : `${path}.${tagToHex(tag)}`;
}

/** A stable digest of one source value at one tag path, so the gate can spot a kept value without holding it. */
export function valueDigest(path: string, value: string): string {
  return createHash('sha256').update(`${path}\0${value}`, 'utf8').digest('hex');
}

export interface SourceFacts {
  identifyingValues: string[];
  /** valueDigest(path, value) of each public text value the profile makes disappear. */
  sourceValueDigests: string[];
}

const BINARY_TEXTLESS = new Set(['OB', 'OW', 'OF', 'OD', 'OL', 'OV', 'UN', 'SQ', 'US', 'SS', 'UL', 'SL', 'FL', 'FD', 'AT', 'SV', 'UV']);

/** Walks the source (before any change) and collects what must not survive. */
export function collectSourceFacts(dataset: DicomDataset, profile: Profile): SourceFacts {
  return runToEnd(sourceFactsWork(dataset, profile));
}

/** collectSourceFacts as sliced work (a generator that yields now and then; see limits.ts runSliced). */
export function* sourceFactsWork(dataset: DicomDataset, profile: Profile): Generator<void, SourceFacts> {
  let steps = 0;
  const sopClassUid = asciiValue(dataset.get(Tags.SOPClassUID));
  const values = new Set<string>();
  const weak = new Set<string>();
  const categories = new Map<string, Set<ValueCategory>>();
  const keptTexts: string[] = [];
  // What each retain option keeps verbatim: whole UIDs, dates, and institution texts.
  const retainedUids = new Set<string>();
  const retainedDates = new Set<string>();
  const retainedInstitutionTexts: string[] = [];
  const digests = new Set<string>();
  // cleaned: inside a sequence being cleaned, where the engine scrubs every free text.
  // retaining: the retain option that keeps the enclosing sequence, which its items keep too.
  const walk = function* (ds: DicomDataset, charsets: string[], path: string, goingAway: boolean, cleaned: boolean, retaining: ProfileOption | undefined): Generator<void, void> {
    // An item counts as a step too: a sequence of 25,000 empty items is work without elements.
    if (++steps % STEPS_PER_CHECK === 0) yield;
    const cs = charsetsOf(ds, charsets);
    for (const el of ds.values()) {
      if (++steps % STEPS_PER_CHECK === 0) yield;
      if (isPrivateTag(el.tag)) continue;
      const vr = effectiveVr(el);
      const resolved = resolveAction(el.tag, profile, { vr, sopClassUid });
      const away = goingAway || DISAPPEARING.has(resolved.action);
      if (el.items) {
        // A removed, emptied or replaced sequence takes its whole content with it.
        const itemsGo = away && resolved.action !== 'replaceUid';
        const itemsCleaned = cleaned || resolved.action === 'clean';
        const itemsRetaining = itemsGo || itemsCleaned ? undefined : retainingOption(resolved, vr, retaining);
        const here = tagPath(path, el.tag);
        for (const item of el.items) yield* walk(item, cs, here, itemsGo, itemsCleaned, itemsRetaining);
        continue;
      }
      if (BINARY_TEXTLESS.has(vr)) continue;
      if (!away) {
        // Only what the output keeps verbatim excuses a value: a cleaned text is scrubbed of
        // the very values it would otherwise excuse.
        if (vr !== 'PN' && resolved.action === 'keep' && !cleaned) keptTexts.push(textOf(el, cs));
        const option = cleaned ? undefined : retainingOption(resolved, vr, retaining);
        if (option !== undefined) {
          const kept = textOf(el, cs).split('\\').map((v) => v.trim()).filter((v) => v !== '');
          const category = RETAINED_CATEGORY.get(option);
          if (category === 'uid') kept.forEach((v) => retainedUids.add(v));
          else if (category === 'date') kept.forEach((v) => /^\d{8}/.test(v) && retainedDates.add(v.slice(0, 8)));
          else retainedInstitutionTexts.push(...kept);
        }
        continue;
      }
      const text = textOf(el, cs);
      if (text === '') continue;
      addValuesOf(el, text, values, weak, categories);
      if (DISAPPEARING.has(resolved.action)) digests.add(valueDigest(tagPath(path, el.tag), text));
    }
  };
  yield* walk(dataset, [], '', false, false, undefined);
  const retainedUidComponents = new Set([...retainedUids].flatMap((u) => u.split('.')));
  const institutionValues = [...values].filter((v) => categories.get(v)?.size === 1 && categories.get(v)?.has('institution'));
  const inRetainedInstitutionTexts = valuesOccurringIn(institutionValues, retainedInstitutionTexts);
  // A UID, date or issuer that a retain option keeps verbatim (see the header): the value
  // counts again as soon as the source also holds it in an attribute of another category.
  for (const v of [...values]) {
    const seen = categories.get(v);
    if (seen?.size !== 1) continue;
    const category = [...seen][0];
    const excused =
      (category === 'uid' && retainedUids.has(v)) ||
      (category === 'visit' && /^\d+$/.test(v) && retainedUidComponents.has(v)) ||
      (category === 'date' && retainedDates.has(v)) ||
      (category === 'institution' && inRetainedInstitutionTexts.has(v));
    if (excused) values.delete(v);
  }
  // A station, institution or staff name that the profile keeps elsewhere in the file (a
  // station called "MRT" next to a kept code meaning "MRT Oberbauch", an institution named
  // like the manufacturer) is not something the profile asked to hide: counting it would fail
  // every such file. The patient's names and identifiers, dates and UIDs are never excused
  // this way.
  const keptElsewhere = valuesOccurringIn([...weak], keptTexts);
  for (const v of weak) if (!keptElsewhere.has(v)) values.add(v);
  return {
    identifyingValues: [...values].sort((a, b) => b.length - a.length || (a < b ? -1 : 1)),
    sourceValueDigests: [...digests],
  };
}

/**
 * The values that occur, at word boundaries, in one of the texts. Each text is searched once
 * for the values it may hold (see candidatesIn), not once per value: a file may hold thousands
 * of each.
 */
function valuesOccurringIn(values: readonly string[], texts: readonly string[]): Set<string> {
  const found = new Set<string>();
  if (values.length === 0) return found;
  const matchers = values.map(valueMatcher);
  for (const text of texts) {
    const folded = foldForSearch(text);
    for (const m of candidatesIn(folded, matchers)) if (!found.has(m.value) && m.test(text, folded)) found.add(m.value);
    if (found.size === values.length) break;
  }
  return found;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function edge(ch: string | undefined, side: 'before' | 'after'): string {
  if (ch === undefined) return '';
  const cls = /\p{L}/u.test(ch) ? '\\p{L}' : /\p{N}/u.test(ch) ? '\\p{N}' : '';
  if (cls === '') return '';
  return side === 'before' ? `(?<!${cls})` : `(?!${cls})`;
}

/**
 * A case-insensitive, boundary-aware search for one value (a global, Unicode expression).
 * Compiling such an expression costs 50-100 µs (\p{L} and \p{N} under case folding), and most
 * values of a file (its own UIDs, say) are searched for and never found: a pure-ASCII value
 * first looks for its lower-cased text with a plain substring search and compiles the
 * expression only when that finds something.
 */
export class ValueMatcher {
  private compiled: RegExp | undefined;
  /**
   * A pure-ASCII value can only match text that holds it under ASCII case folding (the one
   * non-ASCII letter that folds onto ASCII, long s, is folded by foldForSearch too).
   */
  private readonly needle: string | undefined;

  constructor(readonly value: string) {
    this.needle = /^[\x20-\x7e]+$/.test(value) ? foldForSearch(value) : undefined;
  }

  /** The expression (global: callers reset lastIndex or use it with replace). */
  get regex(): RegExp {
    return (this.compiled ??= compileValuePattern(this.value));
  }

  /** The folded text of a pure-ASCII value (what mayMatch looks for), or undefined. */
  get asciiNeedle(): string | undefined {
    return this.needle;
  }

  /** False when the value cannot occur in the text, given the text's foldForSearch form. */
  mayMatch(folded: string): boolean {
    return this.needle === undefined || folded.includes(this.needle);
  }

  /** True when the value occurs in the text at word boundaries. */
  test(text: string, folded: string = foldForSearch(text)): boolean {
    if (!this.mayMatch(folded)) return false;
    const re = this.regex;
    re.lastIndex = 0;
    return re.test(text);
  }
}

function compileValuePattern(value: string): RegExp {
  const chars = [...value];
  // A dotted number continues across a dot followed by a digit: a UID matches only whole.
  const dotted = /^\d+(?:\.\d+)+$/.test(value);
  const before = `${edge(chars[0], 'before')}${dotted ? '(?<!\\p{N}\\.)' : ''}`;
  const after = `${edge(chars[chars.length - 1], 'after')}${dotted ? '(?!\\.\\p{N})' : ''}`;
  return new RegExp(`${before}${escapeRegExp(value)}${after}`, 'giu');
}

/** The matcher of a value; a study's files share their values, so matchers are kept for reuse. */
export function valueMatcher(value: string): ValueMatcher {
  const cached = matcherCache.get(value);
  if (cached) return cached;
  const matcher = new ValueMatcher(value);
  if (matcherCache.size >= MATCHER_CACHE_SIZE) matcherCache.clear();
  matcherCache.set(value, matcher);
  return matcher;
}

const MATCHER_CACHE_SIZE = 5000;
const matcherCache = new Map<string, ValueMatcher>();

/** Lower case, with U+017F (long s, which case-folds to "s" in a /iu expression) as "s". */
function foldForSearch(text: string): string {
  return text.toLowerCase().replace(/\u017f/g, 's');
}

/** Common ways of writing a DA value (YYYYMMDD) in free text. */
export function dateSpellings(da: string): string[] {
  const y = da.slice(0, 4);
  const m = da.slice(4, 6);
  const d = da.slice(6, 8);
  return [da, `${y}-${m}-${d}`, `${y}/${m}/${d}`, `${y}.${m}.${d}`, `${d}/${m}/${y}`, `${m}/${d}/${y}`, `${d}.${m}.${y}`, `${d}-${m}-${y}`];
}

/** Every pattern for a list of identifying values (dates in their common spellings). */
export function identifyingMatchers(values: readonly string[]): ValueMatcher[] {
  const spelled = new Set<string>();
  for (const v of values) {
    if (/^\d{8}$/.test(v)) dateSpellings(v).forEach((s) => spelled.add(s));
    else spelled.add(v);
  }
  return [...spelled].sort((a, b) => b.length - a.length).map(valueMatcher);
}

/** Dates in free text whatever they belong to: YYYYMMDD / YYYY-MM-DD and DD.MM.YYYY / MM/DD/YYYY forms. */
const FREE_TEXT_DATES: readonly RegExp[] = [
  /(?<!\d)(?:1[89]|20)\d{2}([-/.]?)(?:0[1-9]|1[0-2])\1(?:0[1-9]|[12]\d|3[01])(?!\d)/g,
  /(?<!\d)\d{1,2}([-/.])\d{1,2}\1(?:1[89]|20)\d{2}(?!\d)/g,
];

// A private-use character: it cannot come from a DICOM character set, so it marks removals safely.
const MARK = '\uE000';

/**
 * Removes every identifying value and every date from free text. Undefined when nothing
 * meaningful is left (fewer than two letters or digits in a row), so the caller empties it.
 */
export function scrubText(text: string, matchers: readonly ValueMatcher[]): string | undefined {
  let out = text;
  const folded = foldForSearch(text);
  for (const m of candidatesIn(folded, matchers)) if (m.mayMatch(folded)) out = out.replace(m.regex, MARK);
  for (const re of FREE_TEXT_DATES) out = out.replace(re, MARK);
  if (out === text) return text;
  // An honorific before a removed name would only say that a name was there.
  out = out.replace(/(?<!\p{L})(?:dr|mr|mrs|ms|prof)\.?\s*\uE000/giu, MARK);
  out = out
    .replace(/[\s^,;:]*\uE000[\s^,;:]*/gu, ' ')
    .replace(/\s{2,}/g, ' ')
    .replace(/^[\s\-–,;:/^]+|[\s\-–,;:/^]+$/gu, '');
  return /[\p{L}\p{N}]{2,}/u.test(out) ? out : undefined;
}

/** True when the text holds any identifying value. */
export function containsIdentifying(text: string, matchers: readonly ValueMatcher[]): boolean {
  const folded = foldForSearch(text);
  return candidatesIn(folded, matchers).some((m) => m.test(text, folded));
}

/** Needles of at least this many characters are found through the index (see candidatesIn). */
const INDEX_KEY_LENGTH = 3;
/** Below this many matchers, trying each one is as cheap as the index. */
const INDEX_FROM = 64;

/** The matchers of a file, indexed by the first characters of their ASCII needles. */
interface MatcherIndex {
  /** Positions (in the matcher list) of the needles starting with each key. */
  byKey: Map<string, number[]>;
  /** Positions of matchers that are always tried: non-ASCII values and short needles. */
  always: number[];
}

const matcherIndexes = new WeakMap<readonly ValueMatcher[], MatcherIndex>();

function indexOf(matchers: readonly ValueMatcher[]): MatcherIndex {
  let index = matcherIndexes.get(matchers);
  if (index) return index;
  index = { byKey: new Map(), always: [] };
  matchers.forEach((m, i) => {
    const needle = m.asciiNeedle;
    if (needle === undefined || needle.length < INDEX_KEY_LENGTH) {
      index!.always.push(i);
      return;
    }
    const key = needle.slice(0, INDEX_KEY_LENGTH);
    const list = index!.byKey.get(key);
    if (list) list.push(i);
    else index!.byKey.set(key, [i]);
  });
  matcherIndexes.set(matchers, index);
  return index;
}

/**
 * The matchers that may occur in a text (given its foldForSearch form), in their list order
 * (longest values first, which scrubText relies on). A file with thousands of identifying
 * values (a crafted sequence of many items) would otherwise try each of them on each of its
 * texts: tens of thousands times tens of thousands. With the index, a text costs its length
 * plus the matchers whose first characters it holds.
 */
function candidatesIn(folded: string, matchers: readonly ValueMatcher[]): readonly ValueMatcher[] {
  if (matchers.length < INDEX_FROM) return matchers;
  const index = indexOf(matchers);
  const picked = new Set<number>(index.always);
  for (let i = 0; i + INDEX_KEY_LENGTH <= folded.length; i++) {
    const list = index.byKey.get(folded.slice(i, i + INDEX_KEY_LENGTH));
    if (list) for (const p of list) picked.add(p);
  }
  return [...picked].sort((a, b) => a - b).map((p) => matchers[p]!);
}
