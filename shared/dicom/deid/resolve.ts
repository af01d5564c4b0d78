/**
 * Which action the profile asks for, attribute by attribute: PS3.15 Table E.1-1 (data), the
 * options switched on, the safe private list and the profile's overrides.
 */
import tableRows from '../data/confidentiality-profile-table-e1-1.json';
import { isPrivateCreatorTag, isPrivateTag, lookupTag, matchesTagMask, parseTagMask, TagMask, tagToHex } from '../dictionary';
import { Tags } from '../tags';
import safePrivateData from './data/safe-private-attributes.json';
import { AttributeOverride, Profile, ProfileOption, SafePrivateAttribute } from './profile';

/**
 * keep: unchanged (a sequence is kept and its items are processed);
 * remove (X); empty (Z); dummy (D); replaceUid (U); clean (C, free text and sequences);
 * shift: dates moved by the patient's shift (C of the modified-dates option);
 * pseudonymize: a keyed pseudonym (Patient ID, Patient's Name, Accession Number, Study ID);
 * replace: the override's fixed value;
 * year: a DA or DT reduced to its year (profiles with `dates: "year"`, HIPAA Safe Harbor);
 * keepIfBlockKept: a private creator, kept only when an element of its block is kept.
 */
export type DeidAction =
  | 'keep'
  | 'remove'
  | 'empty'
  | 'dummy'
  | 'replaceUid'
  | 'clean'
  | 'shift'
  | 'pseudonymize'
  | 'replace'
  | 'year'
  | 'keepIfBlockKept';

/** Where a resolved action came from, for reports and verification findings. */
export type ActionSource = 'override' | 'option' | 'basic' | 'private' | 'date-vr' | 'not-listed' | 'dates-year';

export interface ResolvedAction {
  action: DeidAction;
  source: ActionSource;
  /** The Table E.1-1 code that applied ("X/Z/D", "K", ...), when one did. */
  code?: string;
  /** The option whose column applied, when one did. */
  option?: ProfileOption;
  /** The fixed value of a `replace` override. */
  value?: string;
}

export interface ResolveContext {
  /** The element's VR in the file (falls back to the dictionary's). */
  vr?: string;
  /** The instance's SOP Class UID: some attributes' type (and so their action) depends on the IOD. */
  sopClassUid?: string;
  /** For a private element: its block's Private Creator value, if the data set has one. */
  privateCreator?: string;
}

type Row = Record<string, string | undefined> & { id: string; basicProfile: string };

/** Table E.1-1 option columns, by option. */
const OPTION_COLUMNS: readonly [ProfileOption, string][] = [
  ['retainSafePrivate', 'rtnSafePrivOpt'],
  ['retainUids', 'rtnUIDsOpt'],
  ['retainDeviceIdentity', 'rtnDevIdOpt'],
  ['retainInstitutionIdentity', 'rtnInstIdOpt'],
  ['retainPatientCharacteristics', 'rtnPatCharsOpt'],
  ['retainLongitudinalFullDates', 'rtnLongFullDatesOpt'],
  ['retainLongitudinalModifiedDates', 'rtnLongModifDatesOpt'],
  ['cleanDescriptors', 'cleanDescOpt'],
  ['cleanStructuredContent', 'cleanStructContOpt'],
  ['cleanGraphics', 'cleanGraphOpt'],
];

const exactRows = new Map<number, Row>();
const maskedRows: { mask: TagMask; row: Row }[] = [];
for (const row of tableRows as unknown as Row[]) {
  if (!/^[0-9a-fx]{8}$/i.test(row.id)) continue; // the "private attributes" row: handled by privateAction
  const mask = parseTagMask(row.id);
  if (mask) {
    maskedRows.push({ mask, row });
  } else {
    exactRows.set(parseInt(row.id, 16) >>> 0, row);
  }
}

/**
 * Issuer sequences the table leaves out, although it removes the same facts in their other
 * forms (Issuer of Patient ID X, Issuer of Admission ID Sequence X, Issuer of the Specimen
 * Identifier Sequence Z): their Universal Entity ID and assigning facility name the
 * institution whose patient or accession numbers they qualify. Both are Type 3.
 */
const SUPPLEMENT_ROWS: readonly Row[] = [
  { id: '00080051', name: 'Issuer of Accession Number Sequence', basicProfile: 'X' },
  { id: '00100024', name: 'Issuer of Patient ID Qualifiers Sequence', basicProfile: 'X' },
];
for (const row of SUPPLEMENT_ROWS) {
  const tag = parseInt(row.id, 16) >>> 0;
  if (!exactRows.has(tag)) exactRows.set(tag, row);
}

/** The Table E.1-1 row of a public tag, masks ("50xxxxxx", "60xx3000") included. */
export function tableRowOf(tag: number): Row | undefined {
  const exact = exactRows.get(tag >>> 0);
  if (exact) return exact;
  for (const m of maskedRows) if (matchesTagMask(tag, m.mask)) return m.row;
  return undefined;
}

/** Identifiers that research needs grouped: a keyed pseudonym stands in for Z or D. */
const PSEUDONYMIZED: ReadonlySet<number> = new Set([Tags.PatientName, Tags.PatientID, Tags.AccessionNumber, Tags.StudyID]);

/**
 * Combined codes (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) depend on the attribute's Type in the IOD of
 * the instance. Without the IOD module tables, the rule is: the first (most protective)
 * action, except for the attributes below, which are Type 1 or Type 2 in the IODs this
 * pipeline mostly sees, so that removing them would break conformance:
 * Type 1 takes D (or U for a sequence of references) when offered, else the last action;
 * Type 2 takes Z when offered, else D.
 */
const IOD_TYPE: ReadonlyMap<number, 1 | 2> = new Map<number, 1 | 2>([
  [Tags.StudyDate, 2], // General Study
  [Tags.StudyTime, 2], // General Study
  [Tags.PatientName, 2], // Patient
  [Tags.PatientID, 2], // Patient
  [Tags.PatientBirthDate, 2], // Patient
  [Tags.PatientSex, 2], // Patient
  [Tags.AccessionNumber, 2], // General Study
  [Tags.ReferringPhysicianName, 2], // General Study
  [Tags.StudyID, 2], // General Study
  [Tags.ContentDate, 1], // Type 1 in SR Document General, 2C in General Image; D fits both
  [Tags.ContentTime, 1], // as Content Date
  [Tags.AcquisitionDateTime, 1], // Type 1C in the enhanced multi-frame image modules
  [Tags.AcquisitionContextSequence, 2], // Type 2 in the Acquisition Context module
  [Tags.ContentCreatorName, 2], // Type 2 in Presentation State Identification
  [Tags.ContrastBolusAgent, 2], // Type 2 in the Contrast/Bolus module
  [Tags.TreatmentMachineName, 2], // Type 2 in RT Beams
  [Tags.ReviewerName, 2], // Type 2C in RT approval modules
  [Tags.OperatorsName, 2], // Type 2 in RT Series
  // Source Image Sequence: Type 2 in the Derivation Image macro, and what Common Instance
  // Reference points at; emptying it leaves that module referring to nothing. U keeps the
  // references, replaced like every other UID.
  [Tags.SourceImageSequence, 1],
]);

/**
 * Types that differ by IOD for attributes with a combined code: the SOP class prefix and the
 * type there (Referenced Performed Procedure Step Sequence is Type 2 in the SR Document
 * Series module, Type 3 elsewhere, where an empty sequence would be an error).
 */
const IOD_TYPE_BY_CLASS: readonly { tag: number; sopClassPrefix: string; type: 1 | 2 }[] = [
  { tag: Tags.ReferencedPerformedProcedureStepSequence, sopClassPrefix: '1.2.840.10008.5.1.4.1.1.88.', type: 2 },
  // Device Serial Number: Type 1 in the Enhanced General Equipment module of these IODs
  // (Segmentation, VL Whole Slide Microscopy, Microscopy Bulk Simple Annotations, Enhanced CT,
  // MR and PET, Parametric Map).
  ...['1.2.840.10008.5.1.4.1.1.66.4', '1.2.840.10008.5.1.4.1.1.77.1.6', '1.2.840.10008.5.1.4.1.1.91.1', '1.2.840.10008.5.1.4.1.1.2.1', '1.2.840.10008.5.1.4.1.1.4.1', '1.2.840.10008.5.1.4.1.1.130', '1.2.840.10008.5.1.4.1.1.30'].map(
    (sopClassPrefix) => ({ tag: Tags.DeviceSerialNumber, sopClassPrefix, type: 1 as const }),
  ),
  // PET Image: Series Date and Time Type 1 (PET Series), Acquisition Date and Time Type 2 (PET Image).
  { tag: Tags.SeriesDate, sopClassPrefix: '1.2.840.10008.5.1.4.1.1.128', type: 1 },
  { tag: Tags.SeriesTime, sopClassPrefix: '1.2.840.10008.5.1.4.1.1.128', type: 1 },
  { tag: Tags.AcquisitionDate, sopClassPrefix: '1.2.840.10008.5.1.4.1.1.128', type: 2 },
  { tag: Tags.AcquisitionTime, sopClassPrefix: '1.2.840.10008.5.1.4.1.1.128', type: 2 },
  // RT Plan: RT Plan Date and Time Type 2 in RT General Plan (X/D: the dummy).
  { tag: Tags.RTPlanDate, sopClassPrefix: '1.2.840.10008.5.1.4.1.1.481.5', type: 2 },
  { tag: Tags.RTPlanTime, sopClassPrefix: '1.2.840.10008.5.1.4.1.1.481.5', type: 2 },
];

/** Picks one action of a combined code (see IOD_TYPE). */
export function resolveCombinedCode(code: string, tag: number, sopClassUid?: string): 'X' | 'Z' | 'D' | 'U' {
  const parts = code.split('/').map((p) => p.replace('*', '')) as ('X' | 'Z' | 'D' | 'U')[];
  // X/Z/U* (reference sequences): keeping the references with their UIDs replaced is what
  // every IOD that requires them needs, and their items are de-identified like the rest.
  if (parts.includes('U')) return 'U';
  const byClass = sopClassUid ? IOD_TYPE_BY_CLASS.find((t) => t.tag === tag >>> 0 && sopClassUid.startsWith(t.sopClassPrefix)) : undefined;
  const type = byClass?.type ?? IOD_TYPE.get(tag >>> 0);
  const first = parts[0] ?? 'X';
  if (type === 1) {
    if (parts.includes('D')) return 'D';
    return parts[parts.length - 1] ?? first;
  }
  if (type === 2) {
    if (parts.includes('Z')) return 'Z';
    if (parts.includes('D')) return 'D';
  }
  return first;
}

const DATE_VRS = new Set(['DA', 'DT', 'TM']);

function codeToAction(code: string, tag: number, vr: string | undefined, option?: ProfileOption, sopClassUid?: string): DeidAction {
  switch (code) {
    case 'K':
      return 'keep';
    case 'C':
      // The modified-dates option's C means "modify the date", which this pipeline does by shifting.
      if (option === 'retainLongitudinalModifiedDates' && vr !== undefined && DATE_VRS.has(vr)) return 'shift';
      return 'clean';
    case 'X':
      return 'remove';
    case 'Z':
      return 'empty';
    case 'D':
      return 'dummy';
    case 'U':
      // X/Z/U* picks U for a sequence: kept, and its references replaced when its items are processed.
      return vr === 'SQ' ? 'keep' : 'replaceUid';
    default:
      return codeToAction(resolveCombinedCode(code, tag, sopClassUid), tag, vr, option);
  }
}

function fromOverride(o: AttributeOverride, vr: string | undefined): ResolvedAction {
  const base = { source: 'override' as const };
  switch (o.action) {
    case 'keep':
      return { ...base, action: 'keep' };
    case 'remove':
      return { ...base, action: 'remove' };
    case 'empty':
      return { ...base, action: 'empty' };
    case 'replace':
      return { ...base, action: 'replace', value: o.value ?? '' };
    case 'hash':
      return { ...base, action: vr === 'UI' ? 'replaceUid' : 'pseudonymize' };
    case 'shift':
      return { ...base, action: 'shift' };
  }
}

function overrideOf(tag: number, profile: Profile): AttributeOverride | undefined {
  const exact = profile.overrides.get(tag >>> 0);
  if (exact) return exact;
  for (const m of profile.maskOverrides) if (matchesTagMask(tag, m)) return m.override;
  return undefined;
}

interface SafeEntry {
  groupMask: number;
  groupValue: number;
  offset: number;
  creator: string;
  vr?: string;
}

function compileSafe(a: SafePrivateAttribute): SafeEntry {
  const g = a.group.toUpperCase();
  return {
    groupMask: parseInt(g.replace(/[0-9A-F]/g, 'F').replace(/X/g, '0'), 16),
    groupValue: parseInt(g.replace(/X/g, '0'), 16),
    offset: parseInt(a.element.slice(2), 16),
    creator: a.creator.trim(),
    ...(a.vr ? { vr: a.vr } : {}),
  };
}

const BUILT_IN_SAFE: readonly SafeEntry[] = (safePrivateData.attributes as SafePrivateAttribute[]).map(compileSafe);
const profileSafeCache = new WeakMap<Profile, readonly SafeEntry[]>();

/** True when (creator, group, element offset) is on the built-in or the profile's safe list. */
export function isSafePrivate(tag: number, creator: string | undefined, vr: string | undefined, profile: Profile): boolean {
  if (creator === undefined) return false;
  let extra = profileSafeCache.get(profile);
  if (!extra) {
    extra = profile.safePrivate.map(compileSafe);
    profileSafeCache.set(profile, extra);
  }
  const group = tag >>> 16;
  const offset = tag & 0xff;
  const c = creator.trim();
  const matches = (e: SafeEntry) =>
    (group & e.groupMask) === e.groupValue &&
    offset === e.offset &&
    c === e.creator &&
    // A VR read from the file that contradicts the list means a different attribute; UN says nothing.
    (e.vr === undefined || vr === undefined || vr === 'UN' || vr === e.vr);
  return BUILT_IN_SAFE.some(matches) || extra.some(matches);
}

function privateAction(tag: number, profile: Profile, ctx: ResolveContext): ResolvedAction {
  const group = tag >>> 16;
  const el = tag & 0xffff;
  const retain = profile.options.has('retainSafePrivate');
  // Groups 0001, 0003, 0005, 0007 and FFFF are not allowed to carry private data (PS3.5 7.8.1).
  const illegal = group <= 0x0007 || group === 0xffff;
  if (!retain || illegal || el < 0x0010) return { action: 'remove', source: 'private', code: 'X' };
  if (isPrivateCreatorTag(tag)) return { action: 'keepIfBlockKept', source: 'private', code: 'C', option: 'retainSafePrivate' };
  if (!isSafePrivate(tag, ctx.privateCreator, ctx.vr, profile)) return { action: 'remove', source: 'private', code: 'X' };
  // A safe private UID still points at source instances (e.g. an analysed series): remap it.
  if (ctx.vr === 'UI' && !profile.options.has('retainUids')) {
    return { action: 'replaceUid', source: 'private', code: 'C', option: 'retainSafePrivate' };
  }
  return { action: 'keep', source: 'private', code: 'C', option: 'retainSafePrivate' };
}

/** Public attributes' actions by profile, tag and VR as the caller gave it ('' for none). */
const publicActions = new WeakMap<Profile, Map<number, Map<string, Readonly<ResolvedAction>>>>();
/** Tags remembered per profile at most (the dictionary has about 5,000 public ones). */
const PUBLIC_ACTIONS_MAX = 16384;
/** The attributes whose action depends on the SOP class (IOD_TYPE_BY_CLASS): never remembered. */
const BY_CLASS_TAGS: ReadonlySet<number> = new Set(IOD_TYPE_BY_CLASS.map((t) => t.tag >>> 0));

/**
 * The action for one attribute.
 *
 * Order: a profile override wins over everything; private attributes follow the safe private
 * rules; otherwise the Table E.1-1 row, where an option column of an option that is on
 * replaces the Basic Profile code (PS3.15 E.1.1: "A requirement for an Option, when
 * implemented, overrides any requirement for the underlying Profile"). PS3.15 does not rank
 * options against each other; where two enabled options disagree (Retain Device Identity K
 * against Retain Longitudinal Modified Dates C on calibration dates), C wins: keeping a real
 * date next to shifted ones would give the shift away, while a cleaned value still honours
 * the other option's intent. Public attributes that are not in the table are kept, except
 * dates and times (DA, DT, TM), which are handled like the table's dates (PS3.15 E.1.1 Note 4).
 */
export function resolveAction(tag: number, profile: Profile, context: ResolveContext = {}): Readonly<ResolvedAction> {
  tag = tag >>> 0;
  if (isPrivateTag(tag)) return privateAction(tag, profile, { ...context, vr: context.vr ?? lookupTag(tag)?.vr });
  // The SOP class decides only a few attributes' actions; every other public action is one
  // per profile, tag and VR, and a header asks for the same few hundred again and again.
  if (BY_CLASS_TAGS.has(tag)) return resolvePublic(tag, profile, context.vr ?? lookupTag(tag)?.vr, context.sopClassUid);
  let byTag = publicActions.get(profile);
  if (!byTag) {
    byTag = new Map();
    publicActions.set(profile, byTag);
  }
  let byVr = byTag.get(tag);
  if (!byVr) {
    // Files can carry any number of made-up public tags: past this many, answers are not kept.
    if (byTag.size >= PUBLIC_ACTIONS_MAX) return resolvePublic(tag, profile, context.vr ?? lookupTag(tag)?.vr, undefined);
    byVr = new Map();
    byTag.set(tag, byVr);
  }
  const vrKey = context.vr ?? '';
  let resolved = byVr.get(vrKey);
  if (!resolved) {
    resolved = Object.freeze(resolvePublic(tag, profile, context.vr ?? lookupTag(tag)?.vr, undefined));
    byVr.set(vrKey, resolved);
  }
  return resolved;
}

/** The action for a public attribute (see resolveAction), worked out from the profile and the table. */
function resolvePublic(tag: number, profile: Profile, vr: string | undefined, sopClassUid: string | undefined): ResolvedAction {
  const override = overrideOf(tag, profile);
  if (override) return fromOverride(override, vr);
  // Safe Harbor keeps the year of every date (164.514(b)(2)(i)(C)); file meta dates aside.
  if (profile.dates === 'year' && (vr === 'DA' || vr === 'DT') && tag >>> 16 !== 0x0002) return { action: 'year', source: 'dates-year', code: 'C' };

  const row = tableRowOf(tag);
  if (!row) {
    if (vr !== undefined && DATE_VRS.has(vr) && tag >>> 16 !== 0x0002) {
      if (profile.options.has('retainLongitudinalFullDates')) return { action: 'keep', source: 'date-vr', code: 'K', option: 'retainLongitudinalFullDates' };
      if (profile.options.has('retainLongitudinalModifiedDates')) return { action: 'shift', source: 'date-vr', code: 'C', option: 'retainLongitudinalModifiedDates' };
      return { action: 'remove', source: 'date-vr', code: 'X' };
    }
    return { action: 'keep', source: 'not-listed' };
  }

  let chosen: { code: string; option: ProfileOption } | undefined;
  for (const [option, column] of OPTION_COLUMNS) {
    const code = row[column];
    if (!code || !profile.options.has(option)) continue;
    if (!chosen || (chosen.code === 'K' && code === 'C')) chosen = { code, option };
  }
  if (chosen) {
    return { action: codeToAction(chosen.code, tag, vr, chosen.option, sopClassUid), source: 'option', code: chosen.code, option: chosen.option };
  }

  const code = row.basicProfile;
  let action = codeToAction(code, tag, vr, undefined, sopClassUid);
  if (tag === Tags.PatientBirthDate && profile.options.has('retainLongitudinalModifiedDates') && profile.options.has('retainPatientCharacteristics')) {
    // The table empties the birth date under every option; shifted with the patient's other
    // dates it reveals only the age, which Retain Patient Characteristics keeps anyway.
    action = 'shift';
  } else if (PSEUDONYMIZED.has(tag) && (action === 'empty' || action === 'dummy')) {
    action = 'pseudonymize';
  }
  return { action, source: 'basic', code };
}

/** "(GGGG,EEEE)" for findings; private tags keep their block byte, which says nothing about the source. */
export function describeTag(tag: number): string {
  const h = tagToHex(tag);
  const keyword = isPrivateTag(tag) ? 'private' : (lookupTag(tag)?.keyword ?? 'unknown');
  return `(${h.slice(0, 4)},${h.slice(4)}) ${keyword}`;
}
