/**
 * The de-identification profile as configuration: PS3.15 Annex E Basic Application Level
 * Confidentiality Profile, the options switched on, per-attribute overrides and additions to
 * the safe private list. Profiles are versioned JSON files (see profiles/); the version and
 * name are written into every output's De-identification Method (0012,0063).
 */
import { createHash } from 'node:crypto';

import { ErrorCodes, PipelineError } from '../../errors';
import { isPrivateTag, lookupTag, parseTagMask, parseTagOrKeyword, TagMask, tagToHex } from '../dictionary';
import { parseBurnedInConfig } from '../pixels/regions';
import basicJson from './profiles/basic.json';
import limitedDataSetJson from './profiles/limited-data-set.json';
import researchDefaultJson from './profiles/research-default.json';
import safeHarborJson from './profiles/safe-harbor.json';

/** PS3.15 E.3 options, by the names profile files use. */
export const PROFILE_OPTIONS = [
  'cleanPixelData',
  'cleanGraphics',
  'cleanStructuredContent',
  'cleanDescriptors',
  'retainLongitudinalFullDates',
  'retainLongitudinalModifiedDates',
  'retainPatientCharacteristics',
  'retainDeviceIdentity',
  'retainUids',
  'retainSafePrivate',
  'retainInstitutionIdentity',
] as const;

export type ProfileOption = (typeof PROFILE_OPTIONS)[number];

export const OVERRIDE_ACTIONS = ['keep', 'remove', 'empty', 'replace', 'hash', 'shift'] as const;

/**
 * keep: the value stays; remove: the attribute goes; empty: zero length; replace: `value`;
 * hash: a keyed pseudonym (text) or research UID (UI); shift: the patient's date shift (DA, DT, TM).
 */
export type OverrideAction = (typeof OVERRIDE_ACTIONS)[number];

export interface AttributeOverride {
  action: OverrideAction;
  /** The replacement text, for `replace` only. */
  value?: string;
}

/** A private attribute known to be safe: a PS3.15 Table E.3.10-1 row or a profile addition. */
export interface SafePrivateAttribute {
  /** Private Creator value, compared after trimming padding, case-sensitively as PS3.5 7.8.1 asks. */
  creator: string;
  /** Four hex digits of an odd group, or with `x` wildcards ("00x9"). */
  group: string;
  /** "xxEE": the element offset inside the creator's block. */
  element: string;
  /** When given, an element whose explicit VR differs (UN aside) is not taken as this attribute. */
  vr?: string;
}

export interface Profile {
  readonly name: string;
  readonly version: string;
  /**
   * SHA-256 (first 16 hex digits) of the profile's data in canonical form (keys sorted, the
   * description left out): two files with the same name and version but other rules differ
   * here, so that the index can tell which research copies a profile change must re-create.
   */
  readonly digest: string;
  readonly options: ReadonlySet<ProfileOption>;
  /** Exact public tags to their override. */
  readonly overrides: ReadonlyMap<number, AttributeOverride>;
  /** Overrides keyed with masks ("60xx3000"), tried after the exact ones, in file order. */
  readonly maskOverrides: readonly (TagMask & { override: AttributeOverride })[];
  /** Profile additions to the built-in safe private list. */
  readonly safePrivate: readonly SafePrivateAttribute[];
  /** Burned-in regions per device (validated by pixels/regions.ts), applied by the pipeline with Clean Pixel Data. */
  readonly burnedIn?: Readonly<Record<string, unknown>>;
  /**
   * "year": every DA and DT value the profile does not override keeps its year only (DA
   * YYYY0101, DT YYYY), the HIPAA Safe Harbor rule for dates. Excludes the date options.
   */
  readonly dates?: 'year';
  /**
   * "aggregate" (the default): an age over 89 becomes 090Y ("90 or older") and a birth date that
   * shows such an age is emptied (HIPAA 164.514(b)(2)(i)(C)); "keep": ages stay exact, for a
   * limited data set only.
   */
  readonly agesOver89: 'aggregate' | 'keep';
  /**
   * What the research patient and its date shift are keyed on: "patientId" (the default, issuer
   * ignored) or "study" (one research patient per source study). See pseudonyms.ts researchPatientKey.
   */
  readonly researchPatient: 'patientId' | 'study';
}

const TOP_LEVEL_KEYS = new Set(['name', 'version', 'description', 'options', 'overrides', 'safePrivate', 'burnedIn', 'dates', 'agesOver89', 'researchPatient']);
const DATE_VRS = new Set(['DA', 'DT', 'TM']);
/** VRs a keyed pseudonym can be written into (13 upper-case characters). */
const HASHABLE_VRS = new Set(['AE', 'CS', 'LO', 'LT', 'PN', 'SH', 'ST', 'UC', 'UT', 'UI']);

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseOverrideKey(key: string): { tag: number } | TagMask | undefined {
  const mask = parseTagMask(key.replace(/[(),\s]/g, ''));
  if (mask) return mask;
  const tag = parseTagOrKeyword(key);
  return tag === undefined ? undefined : { tag };
}

function checkOverride(key: string, raw: unknown, vr: string | undefined, faults: string[]): AttributeOverride | undefined {
  if (!isRecord(raw)) {
    faults.push(`overrides.${key}: must be an object with an action`);
    return undefined;
  }
  for (const k of Object.keys(raw)) if (k !== 'action' && k !== 'value') faults.push(`overrides.${key}: unknown field "${k}"`);
  const action = raw.action;
  if (typeof action !== 'string' || !(OVERRIDE_ACTIONS as readonly string[]).includes(action)) {
    faults.push(`overrides.${key}: action must be one of ${OVERRIDE_ACTIONS.join(', ')}`);
    return undefined;
  }
  const a = action as OverrideAction;
  if (a === 'replace') {
    if (typeof raw.value !== 'string') {
      faults.push(`overrides.${key}: replace needs a string value`);
      return undefined;
    }
    if (vr === 'UI' && !/^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$/.test(raw.value)) faults.push(`overrides.${key}: value is not a valid UID`);
    if (vr === 'SQ') faults.push(`overrides.${key}: a sequence cannot be replaced by text`);
    return { action: a, value: raw.value };
  }
  if (raw.value !== undefined) faults.push(`overrides.${key}: value is only allowed with replace`);
  if (a === 'shift' && vr !== undefined && !DATE_VRS.has(vr)) faults.push(`overrides.${key}: shift applies to DA, DT and TM attributes only`);
  if (a === 'hash' && vr !== undefined && !HASHABLE_VRS.has(vr)) faults.push(`overrides.${key}: hash applies to text and UI attributes only`);
  return { action: a };
}

function checkSafePrivate(raw: unknown, i: number, faults: string[]): SafePrivateAttribute | undefined {
  const where = `safePrivate[${i}]`;
  if (!isRecord(raw)) {
    faults.push(`${where}: must be an object with creator, group and element`);
    return undefined;
  }
  for (const k of Object.keys(raw)) if (!['creator', 'group', 'element', 'vr'].includes(k)) faults.push(`${where}: unknown field "${k}"`);
  const { creator, group, element, vr } = raw;
  let ok = true;
  if (typeof creator !== 'string' || creator.trim() === '' || creator.length > 64) {
    faults.push(`${where}: creator must be a non-empty string of at most 64 characters`);
    ok = false;
  }
  // The last hex digit decides whether a group is odd (private); a wildcard there is allowed.
  if (typeof group !== 'string' || !/^[0-9A-Fa-fxX]{3}[13579BbDdFfxX]$/.test(group)) {
    faults.push(`${where}: group must be four hex digits (x for any) of an odd group`);
    ok = false;
  }
  if (typeof element !== 'string' || !/^[xX]{2}[0-9A-Fa-f]{2}$/.test(element)) {
    faults.push(`${where}: element must be "xxEE", the offset inside the creator's block`);
    ok = false;
  }
  if (vr !== undefined && (typeof vr !== 'string' || !/^[A-Z]{2}$/.test(vr))) {
    faults.push(`${where}: vr must be a two-letter VR`);
    ok = false;
  }
  if (!ok) return undefined;
  return {
    creator: (creator as string).trim(),
    group: (group as string).toUpperCase().replace(/X/g, 'x'),
    element: `xx${(element as string).slice(2).toUpperCase()}`,
    ...(vr === undefined ? {} : { vr: vr as string }),
  };
}

/**
 * Validates a parsed profile file and returns the profile.
 *
 * @throws PipelineError PROFILE_INVALID with one message naming every fault (missing name or
 *   version, unknown option, conflicting options, unknown attribute, bad action or value,
 *   malformed safe private entry, unknown field). Pure: no I/O.
 */
export function loadProfile(json: unknown): Profile {
  const faults: string[] = [];
  if (!isRecord(json)) throw new PipelineError(ErrorCodes.PROFILE_INVALID, 'profile: must be a JSON object');
  for (const k of Object.keys(json)) if (!TOP_LEVEL_KEYS.has(k)) faults.push(`unknown field "${k}"`);

  const name = json.name;
  if (typeof name !== 'string' || name.trim() === '') faults.push('name: missing or empty');
  const version = json.version;
  if (typeof version !== 'string' || !/^\d+\.\d+\.\d+$/.test(version)) faults.push('version: missing or not MAJOR.MINOR.PATCH');
  if (json.description !== undefined && typeof json.description !== 'string') faults.push('description: must be a string');

  const options = new Set<ProfileOption>();
  if (!Array.isArray(json.options)) {
    faults.push('options: missing or not an array (use [] for the Basic profile alone)');
  } else {
    for (const o of json.options) {
      if (typeof o !== 'string' || !(PROFILE_OPTIONS as readonly string[]).includes(o)) faults.push(`options: unknown option ${JSON.stringify(o)}`);
      else if (options.has(o as ProfileOption)) faults.push(`options: ${o} listed twice`);
      else options.add(o as ProfileOption);
    }
    // E.3.6 defines the two as alternatives: dates cannot be both kept and modified.
    if (options.has('retainLongitudinalFullDates') && options.has('retainLongitudinalModifiedDates')) {
      faults.push('options: retainLongitudinalFullDates and retainLongitudinalModifiedDates exclude each other');
    }
  }

  const overrides = new Map<number, AttributeOverride>();
  const maskOverrides: (TagMask & { override: AttributeOverride })[] = [];
  if (json.overrides !== undefined) {
    if (!isRecord(json.overrides)) {
      faults.push('overrides: must be an object keyed by keyword or GGGGEEEE');
    } else {
      for (const [key, raw] of Object.entries(json.overrides)) {
        const parsed = parseOverrideKey(key);
        if (!parsed) {
          faults.push(`overrides: unknown attribute "${key}"`);
          continue;
        }
        const tag = 'tag' in parsed ? parsed.tag : parsed.value;
        if (isPrivateTag(tag)) {
          faults.push(`overrides.${key}: private attributes are configured in safePrivate`);
          continue;
        }
        if ('tag' in parsed && lookupTag(parsed.tag) === undefined) {
          faults.push(`overrides.${key}: ${tagToHex(parsed.tag)} is not in the DICOM dictionary`);
          continue;
        }
        const o = checkOverride(key, raw, lookupTag(tag)?.vr, faults);
        if (!o) continue;
        if ('tag' in parsed) {
          if (overrides.has(parsed.tag)) faults.push(`overrides.${key}: the same attribute is overridden twice`);
          overrides.set(parsed.tag, o);
        } else {
          maskOverrides.push({ mask: parsed.mask, value: parsed.value, override: o });
        }
      }
    }
  }

  const safePrivate: SafePrivateAttribute[] = [];
  if (json.safePrivate !== undefined) {
    if (!Array.isArray(json.safePrivate)) faults.push('safePrivate: must be an array');
    else json.safePrivate.forEach((raw, i) => {
      const s = checkSafePrivate(raw, i, faults);
      if (s) safePrivate.push(s);
    });
    if (Array.isArray(json.safePrivate) && json.safePrivate.length > 0 && !options.has('retainSafePrivate')) {
      faults.push('safePrivate: entries have no effect without the retainSafePrivate option');
    }
  }

  faults.push(...parseBurnedInConfig(json.burnedIn).faults);

  if (json.dates !== undefined && json.dates !== 'year') faults.push('dates: must be "year" when given');
  if (json.dates === 'year' && (options.has('retainLongitudinalFullDates') || options.has('retainLongitudinalModifiedDates'))) {
    faults.push('dates: "year" excludes retainLongitudinalFullDates and retainLongitudinalModifiedDates');
  }
  if (json.agesOver89 !== undefined && json.agesOver89 !== 'aggregate' && json.agesOver89 !== 'keep') faults.push('agesOver89: must be "aggregate" or "keep"');
  if (json.researchPatient !== undefined && json.researchPatient !== 'patientId' && json.researchPatient !== 'study') {
    faults.push('researchPatient: must be "patientId" or "study"');
  }

  if (faults.length > 0) {
    const label = typeof name === 'string' && name.trim() !== '' ? `profile "${name}"` : 'profile';
    throw new PipelineError(ErrorCodes.PROFILE_INVALID, `${label}: ${faults.join('; ')}`);
  }
  return {
    name: (name as string).trim(),
    version: version as string,
    digest: profileDigest(json),
    options,
    overrides,
    maskOverrides,
    safePrivate,
    ...(json.burnedIn === undefined ? {} : { burnedIn: json.burnedIn as Record<string, unknown> }),
    ...(json.dates === 'year' ? { dates: 'year' as const } : {}),
    agesOver89: json.agesOver89 === 'keep' ? 'keep' : 'aggregate',
    researchPatient: json.researchPatient === 'study' ? 'study' : 'patientId',
  };
}

/** Keys sorted at every level: the same data gives the same text whatever the file's key order. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (isRecord(v)) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}

/** See Profile.digest. The description says nothing about what the profile does, so it is left out. */
export function profileDigest(json: Record<string, unknown>): string {
  const { description: _description, ...rules } = json;
  return createHash('sha256').update(canonicalJson(rules)).digest('hex').slice(0, 16);
}

/** The Basic Application Level Confidentiality Profile with no option (profiles/basic.json). */
export function basicProfile(): Profile {
  return loadProfile(basicJson);
}

/**
 * The research default (profiles/research-default.json): Basic with Retain Longitudinal
 * Temporal Information with Modified Dates, Retain Patient Characteristics, Retain Device
 * Identity, Retain Safe Private and Clean Descriptors.
 */
export function defaultProfile(): Profile {
  return loadProfile(researchDefaultJson);
}

/** The profiles shipped with the pipeline, by the name DEID_PROFILE may give instead of a path. */
const BUILT_IN_PROFILES: Readonly<Record<string, unknown>> = {
  basic: basicJson,
  'research-default': researchDefaultJson,
  'safe-harbor': safeHarborJson,
  'limited-data-set': limitedDataSetJson,
};

export const BUILT_IN_PROFILE_NAMES: readonly string[] = Object.keys(BUILT_IN_PROFILES);

/**
 * A built-in profile by name (basic, research-default, safe-harbor, limited-data-set), or
 * undefined for any other name. Throws PROFILE_INVALID only if a shipped file is broken.
 */
export function builtInProfile(name: string): Profile | undefined {
  const json = Object.hasOwn(BUILT_IN_PROFILES, name) ? BUILT_IN_PROFILES[name] : undefined;
  return json === undefined ? undefined : loadProfile(json);
}
