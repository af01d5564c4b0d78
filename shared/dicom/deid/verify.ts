/**
 * The verification gate: an independent check of a de-identified output against the profile
 * and the source's identifying values, run before anything leaves the identified zone.
 * Findings name tags and rules, never values.
 */
import { asciiValue, DicomDataset, DicomElement, TEXT_VRS } from '../dataset';
import { isPrivateCreatorTag, isPrivateTag } from '../dictionary';
import { HeaderLimits, runSliced, runToEnd, STEPS_PER_CHECK } from '../limits';
import { parseDicomBuffer } from '../parser';
import { Tags } from '../tags';
import { DEID_METHOD_CODES, DeidReport, VerifyingObserver } from './engine';
import { DetectContext, FreeTextDetector, localDetector } from './freeText/detector';
import { NO_SOURCE_NAMES, sourceNames } from './freeText/names';
import { DETECTED_VRS, detectsKeptValue } from './freeText/policy';
import {
  charsetsOf,
  containsIdentifying,
  DUMMY_DATE,
  DUMMY_DATE_TIME,
  DUMMY_TEXT,
  DUMMY_TIME,
  effectiveVr,
  identifyingMatchers,
  isPlausibleDate,
  privateCreatorOf,
  tagPath,
  textOf,
  valueDigest,
  ValueMatcher,
} from './identifying';
import { Profile } from './profile';
import { describeTag, resolveAction, ResolvedAction } from './resolve';

/** What the gate needs of the engine's report; without sourceNames, the detector looks for names the header never mentions only. */
export type GateReport = Pick<DeidReport, 'identifyingValues' | 'sourceValueDigests'> & Partial<Pick<DeidReport, 'sourceNames'>>;

export interface VerificationResult {
  passed: boolean;
  /** One line per fault: the tag path and the rule, never a value. */
  findings: string[];
}

const PIXEL_TAGS: ReadonlySet<number> = new Set([Tags.PixelData, Tags.FloatPixelData, Tags.DoubleFloatPixelData]);
/** Binary VRs that hold numbers only: a name cannot hide in them readably. */
const NUMERIC_BINARY = new Set(['US', 'SS', 'UL', 'SL', 'FL', 'FD', 'AT', 'SV', 'UV', 'OF', 'OD', 'OL', 'OV']);
/**
 * In opaque bytes (OB, OW, UN) short values match by chance; only values of this length or
 * more are looked for there.
 */
const MIN_BINARY_MATCH = 5;
const UID_PATTERN = /^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$/;

function where(path: string, tag: number): string {
  return path === '' ? describeTag(tag) : `${path}.${describeTag(tag)}`;
}

/**
 * The data set a walk is in: `path` keys the source value digests (tags only, as the report
 * made them), `label` names it in findings. Made only when a digest or a finding needs them:
 * most elements need neither, and a multi-frame header has thousands.
 */
interface Place {
  readonly path: string;
  readonly label: string;
}

const TOP: Place = { path: '', label: '' };

/** Item `index` of the sequence `tag` in `outer`. */
class ItemPlace implements Place {
  private madePath?: string;
  private madeLabel?: string;
  constructor(
    private readonly outer: Place,
    private readonly tag: number,
    private readonly index: number,
  ) {}

  get path(): string {
    return (this.madePath ??= tagPath(this.outer.path, this.tag));
  }

  get label(): string {
    return (this.madeLabel ??= `${where(this.outer.label, this.tag).replace(/ \S+$/, '')}[${this.index}]`);
  }
}

/** The engine's dummy Verifying Observer: exactly its four attributes, each the dummy, the code sequence empty. */
function isDummyVerifyingObserver(item: DicomDataset): boolean {
  const textAt = (tag: number) => {
    const value = item.get(tag)?.value;
    return value === undefined ? undefined : Buffer.from(value).toString('latin1').replace(/[\0 ]+$/, '');
  };
  const codes = item.get(VerifyingObserver.IdentificationCodeSequence);
  return item.size === 4 && textAt(VerifyingObserver.Name) === DUMMY_TEXT && textAt(VerifyingObserver.Organization) === DUMMY_TEXT &&
    textAt(VerifyingObserver.DateTime) === DUMMY_DATE_TIME && codes?.items !== undefined && codes.items.length === 0;
}

/**
 * The engine's sequence dummies: one empty item; for SR content one TEXT item saying
 * ANONYMIZED; for a Verifying Observer one observer of dummies only.
 */
function isDummySequence(el: DicomElement): boolean {
  const items = el.items ?? [];
  if (items.every((i) => i.size === 0)) return true;
  if (items.length !== 1) return false;
  if (el.tag === VerifyingObserver.Sequence) return isDummyVerifyingObserver(items[0]!);
  if (el.tag !== Tags.ContentSequence) return false;
  const item = items[0]!;
  const text = item.get(Tags.TextValue)?.value;
  return item.size === 4 && text !== undefined && Buffer.from(text).toString('latin1').trim() === DUMMY_TEXT;
}

interface GateState {
  profile: Profile;
  sopClassUid?: string;
  digests: ReadonlySet<string>;
  matchers: ValueMatcher[];
  /** The matchers without the source's dates, for UIDs that Retain UIDs keeps as they are. */
  retainedUidMatchers: ValueMatcher[];
  binaryMatchers: ValueMatcher[];
  /** The free-text detector's context: the source's names; the research UIDs the engine wrote are no finding. */
  freeText: DetectContext;
  /** The same detector the engine ran (GateOptions.detector). */
  detector: FreeTextDetector;
  findings: string[];
  /** Elements visited, for the slicing of long work. */
  steps: number;
}

/** The private blocks (group << 8 | block) of `ds` that hold an element, in one pass. */
function usedPrivateBlocks(ds: DicomDataset): Set<number> {
  const used = new Set<number>();
  for (const t of ds.keys()) {
    if (isPrivateTag(t) && !isPrivateCreatorTag(t) && (t & 0xffff) >= 0x1000) used.add(((t >>> 16) << 8) | ((t >>> 8) & 0xff));
  }
  return used;
}

/**
 * Number strings: a count or a measurement, whatever digits it shares with an ID (a Series
 * Number 123456 next to a Patient ID 123456). Only all-digit values could match there, and
 * the attribute gives them their meaning; a number the profile changes is still checked
 * against its source value (the digest check).
 */
const NUMBER_STRING_VRS = new Set(['IS', 'DS']);

/**
 * Code strings (CS) hold defined terms of the standard (ValueType TEXT, Modality CT, Patient
 * Sex M): a name component such as "Text" in a source's "Enter^Text" meets them by chance. A
 * code string the profile changes is still checked against its source value (the digest check).
 */
const CODED_VRS = new Set(['CS']);

/**
 * A UID kept under Retain UIDs: the option keeps it as is, and a UID often embeds the date it
 * was made (a study date the table empties elsewhere), which is then no finding there.
 */
function isRetainedUid(vr: string, resolved: ResolvedAction, profile: Profile): boolean {
  return vr === 'UI' && resolved.action === 'keep' && profile.options.has('retainUids') && (resolved.option === 'retainUids' || resolved.option === 'retainSafePrivate');
}

/** True when it adds a finding. */
function checkIdentifyingText(vr: string, text: string, st: GateState, at: () => string, resolved: ResolvedAction): boolean {
  if (NUMBER_STRING_VRS.has(vr) || CODED_VRS.has(vr)) return false;
  const matchers = isRetainedUid(vr, resolved, st.profile) ? st.retainedUidMatchers : st.matchers;
  if (!containsIdentifying(text, matchers)) return false;
  st.findings.push(`${at()}: holds an identifying value of the source (identifying-value search)`);
  return true;
}

/**
 * The free-text detector over the texts the engine runs it on (what the profile keeps or
 * cleans): a name, date or identifier left there stops publication. The finding names the
 * kinds, never the text.
 */
function checkFreeText(tag: number, vr: string, text: string, resolved: ResolvedAction, isPrivate: boolean, st: GateState, at: () => string): void {
  if (isPrivate || !DETECTED_VRS.has(vr)) return;
  if (resolved.action !== 'clean' && !detectsKeptValue(tag, vr, resolved)) return;
  const spans = st.detector.detect(text, st.freeText);
  if (spans.length === 0) return;
  const kinds = [...new Set(spans.map((s) => s.kind))].sort().join(', ');
  st.findings.push(`${at()}: free text holds ${kinds} (free-text detector)`);
}

function checkBytes(bytes: Uint8Array, st: GateState, at: () => string): void {
  if (st.binaryMatchers.length === 0 || bytes.length === 0) return;
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // latin1 covers single-byte character sets byte for byte; UTF-8 covers ISO_IR 192 text.
  if (containsIdentifying(buf.toString('latin1'), st.binaryMatchers) || containsIdentifying(buf.toString('utf8'), st.binaryMatchers)) {
    st.findings.push(`${at()}: holds an identifying value of the source in its bytes (identifying-value search)`);
  }
}

function isOwnDummy(vr: string, text: string): boolean {
  return text === DUMMY_TEXT || text === DUMMY_DATE || text === DUMMY_TIME || text === DUMMY_DATE_TIME || (vr === 'DS' && text === '0') || (vr === 'IS' && text === '0') || text === '000Y';
}

function* walk(ds: DicomDataset, st: GateState, charsets: string[], place: Place): Generator<void, void> {
  // An item counts as a step too: a sequence of 25,000 empty items is work without elements.
  if (++st.steps % STEPS_PER_CHECK === 0) yield;
  const cs = charsetsOf(ds, charsets);
  let blocks: Set<number> | undefined;
  for (const el of ds.values()) {
    if (++st.steps % STEPS_PER_CHECK === 0) yield;
    const tag = el.tag;
    const at = () => where(place.label, tag);
    const vr = effectiveVr(el);
    if (PIXEL_TAGS.has(tag)) continue;
    const marking = tag === Tags.PatientIdentityRemoved || tag === Tags.DeidentificationMethod ||
      tag === Tags.DeidentificationMethodCodeSequence || tag === Tags.LongitudinalTemporalInformationModified;
    if (marking && place.path === '') continue;

    const resolved = resolveAction(tag, st.profile, { vr, privateCreator: privateCreatorOf(ds, tag, cs), sopClassUid: st.sopClassUid });
    if (isPrivateTag(tag)) {
      if (resolved.action === 'remove') st.findings.push(`${at()}: private attribute not on the safe list (rule: private X)`);
      if (resolved.action === 'keepIfBlockKept') {
        blocks ??= usedPrivateBlocks(ds);
        const used = blocks.has(((tag >>> 16) << 8) | (tag & 0xff));
        if (!used) st.findings.push(`${at()}: private creator without a retained element (rule: private creator)`);
      }
    } else if (resolved.action === 'remove') {
      st.findings.push(`${at()}: present, but the profile removes it (rule ${resolved.code ?? 'X'}, ${resolved.source})`);
    }

    if (el.items) {
      if (resolved.action === 'empty' && el.items.length > 0) st.findings.push(`${at()}: sequence not emptied (rule ${resolved.code ?? 'Z'})`);
      if (resolved.action === 'dummy' && !isDummySequence(el)) st.findings.push(`${at()}: sequence not replaced by a dummy (rule ${resolved.code ?? 'D'})`);
      for (let i = 0; i < el.items.length; i++) yield* walk(el.items[i]!, st, cs, new ItemPlace(place, tag, i));
      continue;
    }
    if (!el.value || el.value.length === 0) continue;

    if (TEXT_VRS.has(vr) || vr === 'PN') {
      const text = textOf(el, cs);
      if (text === '') continue;
      if (resolved.action === 'empty' || resolved.action === 'dummy' || resolved.action === 'replaceUid' || resolved.action === 'pseudonymize' ||
        (resolved.action === 'shift' && vr !== 'TM') || resolved.action === 'replace') {
        const exempt = isOwnDummy(vr, text) || (resolved.action === 'replace' && text === resolved.value);
        if (!exempt && st.digests.has(valueDigest(tagPath(place.path, tag), text))) {
          st.findings.push(`${at()}: keeps its source value (rule ${resolved.code ?? resolved.action}, ${resolved.source})`);
        }
      }
      if (resolved.action === 'replaceUid' || (vr === 'UI' && resolved.action === 'dummy')) {
        for (const uid of text.split('\\')) {
          if (!UID_PATTERN.test(uid) || uid.length > 64) st.findings.push(`${at()}: replacement UID is not a valid UID (rule U)`);
        }
      }
      // One finding per value: the detector looks further only where the source's own values are not found.
      if (!checkIdentifyingText(vr, text, st, at, resolved)) checkFreeText(tag, vr, text, resolved, isPrivateTag(tag), st, at);
    } else if (!NUMERIC_BINARY.has(vr)) {
      checkBytes(el.value, st, at);
    }
  }
}

function checkMarking(ds: DicomDataset, profile: Profile, findings: string[]): void {
  const text = (tag: number) => {
    const el = ds.get(tag);
    return el ? textOf(el, []) : undefined;
  };
  if (text(Tags.PatientIdentityRemoved) !== 'YES') findings.push(`${describeTag(Tags.PatientIdentityRemoved)}: not YES (rule E.1.1 item 6)`);
  const seq = ds.get(Tags.DeidentificationMethodCodeSequence);
  const codes = new Set((seq?.items ?? []).map((item) => {
    const cv = item.get(Tags.CodeValue);
    return cv ? textOf(cv, []) : '';
  }));
  for (const c of DEID_METHOD_CODES) {
    const expected = c.option === undefined || profile.options.has(c.option);
    if (expected && !codes.has(c.code)) findings.push(`${describeTag(Tags.DeidentificationMethodCodeSequence)}: code ${c.code} missing (rule E.1.1 item 6)`);
    if (!expected && codes.has(c.code)) findings.push(`${describeTag(Tags.DeidentificationMethodCodeSequence)}: code ${c.code} claims an option the profile does not have`);
  }
  const ltim = text(Tags.LongitudinalTemporalInformationModified);
  const want = profile.options.has('retainLongitudinalModifiedDates') || profile.dates === 'year'
    ? 'MODIFIED'
    : profile.options.has('retainLongitudinalFullDates') ? 'UNMODIFIED' : undefined;
  if (ltim !== want) findings.push(`${describeTag(Tags.LongitudinalTemporalInformationModified)}: ${want ?? 'absent'} expected (rule E.3.6)`);
}

/** What the gate checks besides the data set, and the detector it checks free text with. */
interface GateExtra {
  meta?: DicomDataset;
  trailing?: DicomDataset;
  preamble?: Uint8Array;
  /** The free-text detector the engine ran (DeidContext.detector); the local one when absent. */
  detector?: FreeTextDetector;
}

/**
 * Checks a de-identified data set (and, when given, the file's meta group, trailing elements
 * and preamble). Pure and synchronous; pixel data is not searched (burned-in text is the
 * pixel pipeline's concern).
 */
export function verifyDeidentifiedDataset(
  dataset: DicomDataset,
  report: GateReport,
  profile: Profile,
  extra: GateExtra = {},
): VerificationResult {
  return runToEnd(gateWork(dataset, report, profile, extra));
}

function* gateWork(
  dataset: DicomDataset,
  report: GateReport,
  profile: Profile,
  extra: GateExtra,
): Generator<void, VerificationResult> {
  const matchers = identifyingMatchers(report.identifyingValues);
  const st: GateState = {
    profile,
    sopClassUid: asciiValue(dataset.get(Tags.SOPClassUID)),
    digests: new Set(report.sourceValueDigests),
    matchers,
    retainedUidMatchers: identifyingMatchers(report.identifyingValues.filter((v) => !isPlausibleDate(v))),
    binaryMatchers: identifyingMatchers(report.identifyingValues.filter((v) => v.length >= MIN_BINARY_MATCH)),
    freeText: {
      names: report.sourceNames ? sourceNames(report.sourceNames) : NO_SOURCE_NAMES,
      // The engine writes research UIDs (2.25 form) in place of the UIDs it finds in text.
      isAllowedUid: (uid) => uid.startsWith('2.25.'),
    },
    detector: extra.detector ?? localDetector,
    findings: [],
    steps: 0,
  };
  checkMarking(dataset, profile, st.findings);
  yield* walk(dataset, st, [], TOP);
  if (extra.trailing) yield* walk(extra.trailing, st, charsetsOf(dataset), { path: '', label: 'trailing' });
  if (extra.meta) {
    for (const el of extra.meta.values()) {
      // This implementation's own identification (constants written by the writer) names no one.
      if (el.tag === Tags.ImplementationClassUID || el.tag === Tags.ImplementationVersionName) continue;
      const metaMatchers = isRetainedUid(el.vr, resolveAction(el.tag, profile, { vr: el.vr }), profile) ? st.retainedUidMatchers : matchers;
      if (el.value && containsIdentifying(textOf(el, []), metaMatchers)) st.findings.push(`meta ${where('', el.tag)}: holds an identifying value of the source (identifying-value search)`);
    }
  }
  if (extra.preamble) checkBytes(extra.preamble, st, () => 'preamble');
  return { passed: st.findings.length === 0, findings: st.findings };
}

/**
 * The gate over an output: a data set, or the bytes of the written file (parsed here, within
 * `limits`, so that what is checked is what was written). Gives the event loop a turn every
 * SLICE_MS (see limits.ts). Rejects (DICOM_* PipelineError) only when the bytes cannot be
 * parsed; otherwise resolves with the findings.
 */
export async function verifyDeidentified(
  output: Uint8Array | DicomDataset,
  report: GateReport,
  profile: Profile,
  limits: Partial<HeaderLimits> & { detector?: FreeTextDetector } = {},
): Promise<VerificationResult> {
  const { detector, ...parseLimits } = limits;
  if (output instanceof Map) return runSliced(gateWork(output, report, profile, { detector }));
  const parsed = await parseDicomBuffer(output, parseLimits);
  return runSliced(gateWork(parsed.dataset, report, profile, {
    detector,
    meta: parsed.meta,
    trailing: parsed.trailing,
    preamble: parsed.part10 ? output.subarray(0, 128) : undefined,
  }));
}
