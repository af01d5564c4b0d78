/**
 * QIDO-RS (PS3.18 10.6) over the research catalog.
 *
 * A request is parsed once into a QidoQuery (every 400 is raised there), turned into one
 * parameterised Cosmos DB SQL query per level, and run with offset/limit applied in code:
 * the Cosmos DB emulator server has no OFFSET/LIMIT, and a post-filter (wild cards inside a
 * value, case-insensitive person names) has to see every candidate anyway.
 *
 * Only `dicom` and the summary fields of the catalog documents are ever returned: they are
 * built from the de-identified data set, so nothing identified can appear in a response.
 */
import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';

import { lookupTag, parseTagOrKeyword, tagToHex } from '../dicom/dictionary';
import { ErrorCodes, httpErrorBody, httpStatusFor, PipelineError } from '../errors';
import type { DicomJson, DicomJsonAttribute } from './documents';
import type { ResearchCatalogReader, SqlParameter, SqlQuery } from './researchCatalog';

export type QidoLevel = 'study' | 'series' | 'instance';

/** One way a query key value matches (PS3.4 C.2.2.2). The matchers of one key are ORed. */
export type QidoMatcher =
  | { kind: 'universal' }
  | { kind: 'single'; value: string | number }
  | { kind: 'wildcard'; pattern: string }
  | { kind: 'range'; from?: string; to?: string }
  | { kind: 'uidList'; uids: string[] };

export interface QidoMatchKey {
  /** "GGGGEEEE". */
  tag: string;
  keyword: string;
  vr: string;
  /** The level whose entity the attribute belongs to. */
  level: QidoLevel;
  matchers: QidoMatcher[];
}

export interface QidoQuery {
  /** The level of the returned entities. */
  level: QidoLevel;
  /** From the path (`/studies/{study}/...`): confines the query to one partition. */
  studyInstanceUid?: string;
  seriesInstanceUid?: string;
  keys: QidoMatchKey[];
  /** "GGGGEEEE" tags to return besides the defaults, or every attribute the catalog holds. */
  includeFields: string[] | 'all';
  limit: number;
  offset: number;
  /** Texts for HTTP `Warning: 299` headers (PS3.18 8.3.4): parameters accepted but not honoured. */
  warnings: string[];
}

export const QIDO_DEFAULT_LIMIT = 100;
export const QIDO_MAX_LIMIT = 1000;
/** Cosmos DB caps the parameters of one query; a longer UID list is a client error, not a 500. */
const MAX_LIST_VALUES = 500;

const RESERVED = new Set(['limit', 'offset', 'includefield', 'fuzzymatching', 'emptyvaluematching', 'multiplevaluematching']);

// Tags used by name below.
const T = {
  SpecificCharacterSet: '00080005',
  SOPClassUID: '00080016',
  SOPInstanceUID: '00080018',
  InstanceAvailability: '00080056',
  Modality: '00080060',
  ModalitiesInStudy: '00080061',
  TimezoneOffsetFromUTC: '00080201',
  StudyInstanceUID: '0020000D',
  SeriesInstanceUID: '0020000E',
  NumberOfStudyRelatedSeries: '00201206',
  NumberOfStudyRelatedInstances: '00201208',
  NumberOfSeriesRelatedInstances: '00201209',
} as const;

/**
 * Attributes that can be matched, by the level of the entity they describe. The required
 * matching keys of PS3.18 Table 10.6.1-5 plus a few that research users filter on. Patient
 * attributes sit at the study level: the catalog has no patient documents.
 */
const SEARCHABLE: Readonly<Record<string, QidoLevel>> = {
  '00100010': 'study', // PatientName
  '00100020': 'study', // PatientID
  '00100030': 'study', // PatientBirthDate
  '00100040': 'study', // PatientSex
  '00080020': 'study', // StudyDate
  '00080030': 'study', // StudyTime
  '00080050': 'study', // AccessionNumber
  '00080061': 'study', // ModalitiesInStudy
  '00080090': 'study', // ReferringPhysicianName
  '00081030': 'study', // StudyDescription
  '0020000D': 'study', // StudyInstanceUID
  '00200010': 'study', // StudyID
  '00080060': 'series', // Modality
  '00080021': 'series', // SeriesDate
  '00080031': 'series', // SeriesTime
  '0008103E': 'series', // SeriesDescription
  '00180015': 'series', // BodyPartExamined
  '0020000E': 'series', // SeriesInstanceUID
  '00200011': 'series', // SeriesNumber
  '00400244': 'series', // PerformedProcedureStepStartDate
  '00400245': 'series', // PerformedProcedureStepStartTime
  '00080016': 'instance', // SOPClassUID
  '00080018': 'instance', // SOPInstanceUID
  '00080023': 'instance', // ContentDate
  '00080033': 'instance', // ContentTime
  '00200013': 'instance', // InstanceNumber
};

/**
 * Attributes the ingestion also writes as top-level fields on every document that carries
 * them: matching on those does not depend on `dicom` holding the value, and
 * `studyInstanceUid` is the partition key.
 */
const FIELD_OF_TAG: Readonly<Record<string, string>> = {
  [T.StudyInstanceUID]: 'studyInstanceUid',
  [T.SeriesInstanceUID]: 'seriesInstanceUid',
  [T.SOPInstanceUID]: 'sopInstanceUid',
  [T.SOPClassUID]: 'sopClassUid',
  [T.Modality]: 'modality',
};

/** Study summaries computed over the series of a study: only study documents hold them. */
const STUDY_SUMMARY_TAGS = new Set<string>([T.ModalitiesInStudy, T.NumberOfStudyRelatedSeries, T.NumberOfStudyRelatedInstances]);
const SERIES_SUMMARY_TAGS = new Set<string>([T.NumberOfSeriesRelatedInstances]);

/**
 * Default return attributes per level (PS3.18 Tables 10.6.3-3, -4, -5). `required` ones are
 * returned empty when unknown, as C-FIND returns required keys; `conditional` ones only when
 * the catalog holds a value. Retrieve URL is left out: the research copies have no WADO-RS.
 */
const DEFAULTS: Readonly<Record<QidoLevel, { required: string[]; conditional: string[] }>> = {
  study: {
    required: ['00080020', '00080030', '00080050', T.ModalitiesInStudy, '00080090', '00100010', '00100020', '00100030', '00100040',
      T.StudyInstanceUID, '00200010', T.NumberOfStudyRelatedSeries, T.NumberOfStudyRelatedInstances],
    conditional: [T.SpecificCharacterSet, T.InstanceAvailability, T.TimezoneOffsetFromUTC],
  },
  series: {
    required: [T.Modality, T.SeriesInstanceUID, '00200011', T.NumberOfSeriesRelatedInstances],
    conditional: [T.SpecificCharacterSet, T.TimezoneOffsetFromUTC, '0008103E', '00400244', '00400245', '00400275'],
  },
  instance: {
    required: [T.SOPClassUID, T.SOPInstanceUID, '00200013'],
    conditional: [T.SpecificCharacterSet, T.InstanceAvailability, T.TimezoneOffsetFromUTC, '00280010', '00280011', '00280100', '00280008'],
  },
};

const LEVEL_ORDER: readonly QidoLevel[] = ['study', 'series', 'instance'];

const NUMERIC_VRS = new Set(['IS', 'DS', 'US', 'SS', 'UL', 'SL', 'FL', 'FD', 'UV', 'SV']);
const WILDCARD_VRS = new Set(['AE', 'CS', 'LO', 'LT', 'PN', 'SH', 'ST', 'UC', 'UR', 'UT']);
const RANGE_VRS = new Set(['DA', 'TM']);

function invalid(message: string): PipelineError {
  return new PipelineError(ErrorCodes.QUERY_INVALID, message);
}

/**
 * The levels whose attributes a request may match on: the target level and the levels above
 * it that the path does not already fix (PS3.18 Table 10.6.1-2: `/series` takes study keys,
 * `/studies/{study}/series` only series keys).
 */
export function levelsInScope(level: QidoLevel, path: { study?: string; series?: string }): QidoLevel[] {
  if (level === 'study') return ['study'];
  if (level === 'series') return path.study ? ['series'] : ['study', 'series'];
  if (path.series) return ['instance'];
  return path.study ? ['series', 'instance'] : ['study', 'series', 'instance'];
}

function resolveAttribute(text: string, purpose: 'match' | 'includefield'): { tag: string; keyword: string; vr: string } {
  if (text.includes('.')) {
    if (purpose === 'match') throw invalid(`Sequence matching is not supported (query key ${text})`);
    // Returning a nested attribute means returning its top-level sequence.
    return resolveAttribute(text.slice(0, text.indexOf('.')), purpose);
  }
  const tagNumber = parseTagOrKeyword(text);
  if (tagNumber === undefined) {
    throw invalid(`${text} is not a DICOM attribute keyword or tag (${purpose === 'match' ? 'query key' : 'includefield'})`);
  }
  const entry = lookupTag(tagNumber);
  return { tag: tagToHex(tagNumber), keyword: entry?.keyword ?? tagToHex(tagNumber), vr: entry?.vr ?? 'UN' };
}

const UID_RE = /^[0-9]+(\.[0-9]+)*$/;
const DA_RE = /^\d{8}$/;
const TM_RE = /^([01]\d|2[0-3])([0-5]\d([0-5]\d(\.\d{1,6})?)?)?$/;

function checkDate(value: string, keyword: string): void {
  if (!DA_RE.test(value)) throw invalid(`${keyword} needs a date YYYYMMDD or a range of them (YYYYMMDD-YYYYMMDD, -YYYYMMDD, YYYYMMDD-)`);
  const y = Number(value.slice(0, 4));
  const m = Number(value.slice(4, 6));
  const d = Number(value.slice(6, 8));
  const date = new Date(Date.UTC(y, m - 1, d));
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== m - 1 || date.getUTCDate() !== d) {
    throw invalid(`${keyword} has a date that does not exist`);
  }
}

function checkTime(value: string, keyword: string): void {
  if (!TM_RE.test(value)) throw invalid(`${keyword} needs a time HH[MM[SS[.FFFFFF]]] or a range of them`);
}

/**
 * The upper end of a time range covers the whole period its precision names: "-10" takes
 * in 10:59:59.999999, as a partial value is a period, not an instant.
 */
function timeUpperBound(value: string): string {
  const [whole = '', fraction] = value.split('.');
  if (fraction !== undefined) return `${whole}.${fraction.padEnd(6, '9')}`;
  return `${whole}${'595959'.slice(whole.length)}.999999`;
}

function parseMatcher(raw: string, key: { keyword: string; vr: string }): QidoMatcher[] {
  const { keyword, vr } = key;
  if (raw === '') return [{ kind: 'universal' }];
  if (vr === 'SQ') throw invalid(`Sequence matching is not supported (query key ${keyword})`);
  const hasWildcard = /[*?]/.test(raw);

  if (vr === 'UI') {
    if (hasWildcard) throw invalid(`${keyword} is a UID: wild cards are not allowed, only a UID or a comma-separated list of UIDs`);
    const uids = raw.split(/[,\\]/);
    if (uids.length > MAX_LIST_VALUES) throw invalid(`${keyword} lists more than ${MAX_LIST_VALUES} UIDs`);
    for (const uid of uids) {
      if (uid.length > 64 || !UID_RE.test(uid)) throw invalid(`${keyword} holds a value that is not a UID`);
    }
    return [uids.length === 1 ? { kind: 'single', value: uids[0] as string } : { kind: 'uidList', uids }];
  }

  if (RANGE_VRS.has(vr)) {
    if (hasWildcard) {
      if (raw === '*') return [{ kind: 'universal' }];
      throw invalid(`${keyword} is a ${vr === 'DA' ? 'date' : 'time'}: wild cards are not allowed, use a range`);
    }
    const check = vr === 'DA' ? checkDate : checkTime;
    const dash = raw.indexOf('-');
    if (dash < 0) {
      check(raw, keyword);
      return [{ kind: 'single', value: raw }];
    }
    const from = raw.slice(0, dash);
    const to = raw.slice(dash + 1);
    if (from === '' && to === '') throw invalid(`${keyword} has a range with neither start nor end`);
    if (from !== '') check(from, keyword);
    if (to !== '') check(to, keyword);
    const upper = to === '' ? undefined : vr === 'TM' ? timeUpperBound(to) : to;
    if (from !== '' && upper !== undefined && from > upper) throw invalid(`${keyword} has a range whose start is after its end`);
    return [{ kind: 'range', ...(from !== '' ? { from } : {}), ...(upper !== undefined ? { to: upper } : {}) }];
  }

  if (NUMERIC_VRS.has(vr)) {
    if (hasWildcard) {
      if (raw === '*') return [{ kind: 'universal' }];
      throw invalid(`${keyword} is numeric: wild cards are not allowed`);
    }
    const values = raw.split(',');
    if (values.length > MAX_LIST_VALUES) throw invalid(`${keyword} lists more than ${MAX_LIST_VALUES} values`);
    return values.map((v) => {
      const n = Number(v.trim());
      if (v.trim() === '' || !Number.isFinite(n)) throw invalid(`${keyword} needs a number`);
      return { kind: 'single', value: n };
    });
  }

  if (!WILDCARD_VRS.has(vr)) throw invalid(`${keyword} (VR ${vr}) cannot be matched`);
  // Code strings never hold commas, so a comma there is a list of alternatives; free text keeps its commas.
  const values = vr === 'CS' || vr === 'AE' ? raw.split(',') : [raw];
  if (values.length > MAX_LIST_VALUES) throw invalid(`${keyword} lists more than ${MAX_LIST_VALUES} values`);
  return values.map((v): QidoMatcher => {
    if (/^\*+$/.test(v)) return { kind: 'universal' };
    return /[*?]/.test(v) ? { kind: 'wildcard', pattern: v } : { kind: 'single', value: v };
  });
}

function parseUint(name: string, raw: string): number {
  if (!/^\d{1,9}$/.test(raw)) throw invalid(`${name} must be a non-negative integer`);
  return Number(raw);
}

function parseBoolean(name: string, raw: string): boolean {
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  throw invalid(`${name} must be true or false`);
}

/**
 * Parses a QIDO-RS request. Throws PipelineError QUERY_INVALID (400) for an unknown attribute,
 * an attribute not searchable at this resource, a malformed value, range, limit or offset.
 */
export function parseQidoRequest(level: QidoLevel, query: URLSearchParams, path: { study?: string; series?: string }): QidoQuery {
  const scope = levelsInScope(level, path);
  for (const [name, uid] of [['study', path.study], ['series', path.series]] as const) {
    if (uid !== undefined && (uid.length > 64 || !UID_RE.test(uid))) throw invalid(`the ${name} in the path is not a UID`);
  }

  const keys = new Map<string, QidoMatchKey>();
  const includes = new Set<string>();
  let includeAll = false;
  let limit = QIDO_DEFAULT_LIMIT;
  let offset = 0;
  const warnings: string[] = [];

  for (const [name, raw] of query) {
    const lower = name.toLowerCase();
    if (RESERVED.has(lower)) {
      if (lower === 'limit') {
        limit = parseUint('limit', raw);
        if (limit === 0) throw invalid('limit must be at least 1');
        if (limit > QIDO_MAX_LIMIT) {
          limit = QIDO_MAX_LIMIT;
          warnings.push(`The limit has been reduced to ${QIDO_MAX_LIMIT}, the most this service returns at once.`);
        }
      } else if (lower === 'offset') {
        offset = parseUint('offset', raw);
      } else if (lower === 'includefield') {
        for (const field of raw.split(',')) {
          const f = field.trim();
          if (f === '') continue;
          if (f.toLowerCase() === 'all') includeAll = true;
          else includes.add(resolveAttribute(f, 'includefield').tag);
        }
      } else if (lower === 'fuzzymatching') {
        if (parseBoolean(name, raw)) warnings.push('The fuzzymatching parameter is not supported. Only literal matching has been performed.');
      } else if (lower === 'emptyvaluematching') {
        if (parseBoolean(name, raw)) warnings.push('The emptyvaluematching parameter is not supported. Empty Value Matching has not been performed.');
      } else if (parseBoolean(name, raw)) {
        warnings.push('The multiplevaluematching parameter is not supported. Multiple Value Matching has not been performed.');
      }
      continue;
    }

    const attr = resolveAttribute(name, 'match');
    const attrLevel = SEARCHABLE[attr.tag];
    if (attrLevel === undefined) throw invalid(`${attr.keyword} is not a searchable attribute of this service`);
    if (!scope.includes(attrLevel)) {
      throw invalid(`${attr.keyword} is a ${attrLevel}-level attribute and cannot be matched at this resource (${scope.join(', ')} attributes only)`);
    }
    const matchers = parseMatcher(raw, attr);
    const existing = keys.get(attr.tag);
    // A repeated key is one more alternative for the same attribute, as a list would be.
    if (existing) existing.matchers.push(...matchers);
    else keys.set(attr.tag, { ...attr, level: attrLevel, matchers });
  }

  return {
    level,
    ...(path.study !== undefined ? { studyInstanceUid: path.study } : {}),
    ...(path.series !== undefined ? { seriesInstanceUid: path.series } : {}),
    keys: [...keys.values()],
    includeFields: includeAll ? 'all' : [...includes],
    limit,
    offset,
    warnings,
  };
}

// ---------------------------------------------------------------------------------------------
// SQL

/** The fields a response can be built from: never the source key, rank or blob name. */
const PROJECTION = 'SELECT c.id, c.type, c.studyInstanceUid, c.seriesInstanceUid, c.sopInstanceUid, c.sopClassUid, c.modality, c.dicom, '
  + 'c.modalitiesInStudy, c.numberOfStudyRelatedSeries, c.numberOfStudyRelatedInstances, c.numberOfSeriesRelatedInstances FROM c';

/** A catalog document as the query side reads it (the projection above). */
export interface QidoDocument {
  id: string;
  type: QidoLevel;
  studyInstanceUid: string;
  seriesInstanceUid?: string;
  sopInstanceUid?: string;
  sopClassUid?: string;
  modality?: string;
  dicom: DicomJson;
  modalitiesInStudy?: string[];
  numberOfStudyRelatedSeries?: number;
  numberOfStudyRelatedInstances?: number;
  numberOfSeriesRelatedInstances?: number;
}

export interface CatalogQuery {
  sql: SqlQuery;
  partitionKey?: string;
  /** Decides what the SQL could only narrow down; absent when the SQL decides alone. */
  postFilter?: (doc: QidoDocument) => boolean;
}

class Params {
  readonly list: SqlParameter[] = [];
  add(value: SqlParameter['value']): string {
    const name = `@p${this.list.length}`;
    this.list.push({ name, value });
    return name;
  }
}

function isMultiValued(tag: string): boolean {
  const entry = lookupTag(parseInt(tag, 16));
  return entry !== undefined && entry.vm !== '1';
}

/** The SQL expression of an attribute's (first) value. The tag is validated hex, never user text. */
function valueExpr(key: QidoMatchKey): string {
  const field = FIELD_OF_TAG[key.tag];
  if (field) return `c.${field}`;
  // All brackets: the emulator server's parser rejects `.Value` after a bracketed property.
  return `c.dicom["${key.tag}"]["Value"][0]`;
}

interface MatcherSql {
  /** A condition every match satisfies (absent: the SQL cannot narrow this matcher). */
  sql?: string;
  /** True when `sql` is exactly the matcher, with nothing left for the post-filter. */
  exact: boolean;
}

function literalPrefix(pattern: string): string {
  const i = pattern.search(/[*?]/);
  return i < 0 ? pattern : pattern.slice(0, i);
}

function matcherSql(key: QidoMatchKey, m: QidoMatcher, p: Params): MatcherSql {
  if (m.kind === 'universal') return { exact: true };
  // PN matching is case-insensitive, which the emulator server cannot express in SQL (no
  // STRINGEQUALS or 3-argument STARTSWITH), so person names are decided in code.
  if (key.vr === 'PN') return { exact: false };
  if (key.tag === T.ModalitiesInStudy) {
    if (m.kind === 'single') return { sql: `ARRAY_CONTAINS(c.modalitiesInStudy, ${p.add(String(m.value))})`, exact: true };
    return { exact: false };
  }
  const multi = isMultiValued(key.tag) && !FIELD_OF_TAG[key.tag];
  const expr = valueExpr(key);
  switch (m.kind) {
    case 'single':
      if (typeof m.value === 'number') {
        // DICOM JSON writes IS/DS as numbers; a writer that kept the string still matches.
        return { sql: `${expr} IN (${p.add(m.value)}, ${p.add(String(m.value))})`, exact: true };
      }
      if (multi) return { sql: `ARRAY_CONTAINS(c.dicom["${key.tag}"]["Value"], ${p.add(m.value)})`, exact: true };
      return { sql: `${expr} = ${p.add(m.value)}`, exact: true };
    case 'uidList':
      return { sql: `${expr} IN (${m.uids.map((u) => p.add(u)).join(', ')})`, exact: true };
    case 'range': {
      if (multi) return { exact: false };
      const parts: string[] = [];
      if (m.from !== undefined) parts.push(`${expr} >= ${p.add(m.from)}`);
      if (m.to !== undefined) parts.push(`${expr} <= ${p.add(m.to)}`);
      return { sql: parts.join(' AND '), exact: true };
    }
    case 'wildcard': {
      if (multi) return { exact: false };
      const prefix = literalPrefix(m.pattern);
      if (prefix === '') return { exact: false };
      const onlyTrailingStar = m.pattern === `${prefix}*`;
      return { sql: `STARTSWITH(${expr}, ${p.add(prefix)})`, exact: onlyTrailingStar };
    }
  }
}

function wildcardRegExp(pattern: string, ignoreCase: boolean): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, ignoreCase ? 'is' : 's');
}

/** Every value the document holds for the attribute, as matching sees it. */
function valuesOf(doc: QidoDocument, key: QidoMatchKey): unknown[] {
  if (key.tag === T.ModalitiesInStudy && doc.modalitiesInStudy) return doc.modalitiesInStudy;
  const field = FIELD_OF_TAG[key.tag];
  if (field) {
    const v = (doc as unknown as Record<string, unknown>)[field];
    if (v !== undefined) return [v];
  }
  const values = doc.dicom[key.tag]?.Value ?? [];
  if (key.vr !== 'PN') return values;
  return values.map((v) => (v && typeof v === 'object' ? (v as { Alphabetic?: unknown }).Alphabetic : v));
}

function matcherAccepts(key: QidoMatchKey, m: QidoMatcher, value: unknown): boolean {
  const pn = key.vr === 'PN';
  switch (m.kind) {
    case 'universal':
      return true;
    case 'single':
      if (typeof m.value === 'number') return value === m.value || value === String(m.value);
      if (typeof value !== 'string') return false;
      return pn ? value.toUpperCase() === m.value.toUpperCase() : value === m.value;
    case 'uidList':
      return typeof value === 'string' && m.uids.includes(value);
    case 'range':
      return typeof value === 'string' && (m.from === undefined || value >= m.from) && (m.to === undefined || value <= m.to);
    case 'wildcard':
      return typeof value === 'string' && wildcardRegExp(m.pattern, pn).test(value);
  }
}

/** Whether a document satisfies one key: any of its matchers accepts any of its values. */
export function keyMatches(doc: QidoDocument, key: QidoMatchKey): boolean {
  if (key.matchers.some((m) => m.kind === 'universal')) return true;
  const values = valuesOf(doc, key);
  return key.matchers.some((m) => values.some((v) => matcherAccepts(key, m, v)));
}

/** Builds the SQL of one level for the given keys; `study`/`series` confine it to one study or series. */
function buildLevelQuery(level: QidoLevel, keys: QidoMatchKey[], scope: { study?: string; series?: string }): CatalogQuery {
  const p = new Params();
  const where = [`c.type = ${p.add(level)}`];
  let partitionKey = scope.study;
  if (scope.study !== undefined) where.push(`c.studyInstanceUid = ${p.add(scope.study)}`);
  if (scope.series !== undefined) where.push(`c.seriesInstanceUid = ${p.add(scope.series)}`);
  const postKeys: QidoMatchKey[] = [];

  for (const key of keys) {
    const parts = key.matchers.map((m) => matcherSql(key, m, p));
    if (parts.some((part) => part.exact && part.sql === undefined)) continue; // universal
    if (parts.every((part) => part.sql !== undefined)) {
      where.push(parts.length === 1 ? (parts[0] as MatcherSql).sql as string : `(${parts.map((part) => `(${part.sql})`).join(' OR ')})`);
    }
    if (!parts.every((part) => part.exact)) postKeys.push(key);
    // One study UID names one partition: no fan-out over every physical partition.
    const only = key.matchers[0];
    if (key.tag === T.StudyInstanceUID && key.matchers.length === 1 && only?.kind === 'single' && partitionKey === undefined) {
      partitionKey = String(only.value);
    }
  }

  return {
    // c.id is unique within a partition and, per level, a function of the UID: a total
    // order that makes offset paging repeatable.
    sql: { query: `${PROJECTION} WHERE ${where.join(' AND ')} ORDER BY c.id`, parameters: p.list },
    ...(partitionKey !== undefined ? { partitionKey } : {}),
    ...(postKeys.length > 0 ? { postFilter: (doc: QidoDocument) => postKeys.every((k) => keyMatches(doc, k)) } : {}),
  };
}

/** Keys that only the study document can decide when the target is a lower level. */
function studyOnlyKeys(q: QidoQuery): QidoMatchKey[] {
  return q.level === 'study' ? [] : q.keys.filter((k) => STUDY_SUMMARY_TAGS.has(k.tag));
}

/**
 * The SQL over the target level's documents. When a lower level is matched on a study
 * summary (ModalitiesInStudy on `/series`), those keys are left to a first pass over study
 * documents (`buildStudyPassQuery`), as no lower document carries them.
 */
export function buildCatalogQuery(q: QidoQuery, withinStudy?: string): CatalogQuery {
  const deferred = new Set(studyOnlyKeys(q));
  const study = withinStudy ?? q.studyInstanceUid;
  return buildLevelQuery(q.level, q.keys.filter((k) => !deferred.has(k)), {
    ...(study !== undefined ? { study } : {}),
    ...(q.seriesInstanceUid !== undefined ? { series: q.seriesInstanceUid } : {}),
  });
}

/** The first pass over study documents, when study summaries are matched below the study level; undefined otherwise. */
export function buildStudyPassQuery(q: QidoQuery): CatalogQuery | undefined {
  const summaries = studyOnlyKeys(q);
  if (summaries.length === 0) return undefined;
  const studyKeys = q.keys.filter((k) => k.level === 'study');
  return buildLevelQuery('study', studyKeys, q.studyInstanceUid !== undefined ? { study: q.studyInstanceUid } : {});
}

// ---------------------------------------------------------------------------------------------
// Running and answering

/** Documents read per round trip: enough for a typical page, bounded for post-filtered scans. */
function pageSizeFor(q: QidoQuery, filtered: boolean): number {
  return filtered ? QIDO_MAX_LIMIT : Math.min(q.offset + q.limit, QIDO_MAX_LIMIT);
}

async function collect(
  reader: ResearchCatalogReader,
  q: QidoQuery,
  options: { abortSignal?: AbortSignal },
): Promise<QidoDocument[]> {
  const main = buildCatalogQuery(q);
  const studyPass = buildStudyPassQuery(q);
  const page: QidoDocument[] = [];
  let skipped = 0;

  // Returns false once the page is full, so that no more documents are read.
  const take = (doc: QidoDocument): boolean => {
    if (main.postFilter && !main.postFilter(doc)) return true;
    if (skipped < q.offset) {
      skipped++;
      return true;
    }
    page.push(doc);
    return page.length < q.limit;
  };

  const read = async (spec: CatalogQuery, partitionKey: string | undefined, each: (doc: QidoDocument) => Promise<boolean> | boolean) => {
    const iterable = reader.query<QidoDocument>(spec.sql, {
      ...(partitionKey !== undefined ? { partitionKey } : {}),
      pageSize: pageSizeFor(q, spec.postFilter !== undefined),
      ...(options.abortSignal ? { abortSignal: options.abortSignal } : {}),
    });
    for await (const doc of iterable) {
      if (!(await each(doc))) return false;
    }
    return true;
  };

  if (!studyPass) {
    await read(main, main.partitionKey, take);
    return page;
  }
  await read(studyPass, studyPass.partitionKey, async (study) => {
    if (studyPass.postFilter && !studyPass.postFilter(study)) return true;
    return read(buildCatalogQuery(q, study.studyInstanceUid), study.studyInstanceUid, take);
  });
  return page;
}

async function summariesOf(
  reader: ResearchCatalogReader,
  type: 'study' | 'series',
  uids: string[],
  studyUids: string[],
  options: { abortSignal?: AbortSignal },
): Promise<Map<string, QidoDocument>> {
  const found = new Map<string, QidoDocument>();
  if (uids.length === 0) return found;
  const field = type === 'study' ? 'studyInstanceUid' : 'seriesInstanceUid';
  const p = new Params();
  const sql = `${PROJECTION} WHERE c.type = ${p.add(type)} AND c.${field} IN (${uids.map((u) => p.add(u)).join(', ')})`;
  const iterable = reader.query<QidoDocument>({ query: sql, parameters: p.list }, {
    ...(studyUids.length === 1 ? { partitionKey: studyUids[0] as string } : {}),
    pageSize: uids.length,
    ...(options.abortSignal ? { abortSignal: options.abortSignal } : {}),
  });
  for await (const doc of iterable) {
    const uid = doc[field];
    if (uid !== undefined) found.set(uid, doc);
  }
  return found;
}

/** The attribute a document holds for a tag, from its `dicom` or its summary fields. */
function attributeOf(doc: QidoDocument, tag: string, study?: QidoDocument, series?: QidoDocument): DicomJsonAttribute | undefined {
  const studyDoc = doc.type === 'study' ? doc : study;
  const seriesDoc = doc.type === 'series' ? doc : series;
  switch (tag) {
    case T.ModalitiesInStudy:
      // DICOM JSON leaves Value out of an empty attribute rather than writing [].
      if (studyDoc?.modalitiesInStudy) return studyDoc.modalitiesInStudy.length ? { vr: 'CS', Value: [...studyDoc.modalitiesInStudy] } : { vr: 'CS' };
      break;
    case T.NumberOfStudyRelatedSeries:
      if (studyDoc?.numberOfStudyRelatedSeries !== undefined) return { vr: 'IS', Value: [studyDoc.numberOfStudyRelatedSeries] };
      break;
    case T.NumberOfStudyRelatedInstances:
      if (studyDoc?.numberOfStudyRelatedInstances !== undefined) return { vr: 'IS', Value: [studyDoc.numberOfStudyRelatedInstances] };
      break;
    case T.NumberOfSeriesRelatedInstances:
      if (seriesDoc?.numberOfSeriesRelatedInstances !== undefined) return { vr: 'IS', Value: [seriesDoc.numberOfSeriesRelatedInstances] };
      break;
  }
  const held = doc.dicom[tag];
  if (held) return held;
  const field = FIELD_OF_TAG[tag];
  const value = field ? (doc as unknown as Record<string, unknown>)[field] : undefined;
  if (typeof value === 'string' && tag !== T.Modality) return { vr: 'UI', Value: [value] };
  if (typeof value === 'string') return { vr: 'CS', Value: [value] };
  return undefined;
}

function emptyAttribute(tag: string): DicomJsonAttribute {
  return { vr: lookupTag(parseInt(tag, 16))?.vr ?? 'UN' };
}

/** Orders a data set by tag, as DICOM JSON writers do. */
function sortedByTag(ds: DicomJson): DicomJson {
  const out: DicomJson = {};
  for (const tag of Object.keys(ds).sort()) out[tag] = ds[tag] as DicomJsonAttribute;
  return out;
}

function responseLevels(q: QidoQuery): QidoLevel[] {
  return levelsInScope(q.level, { ...(q.studyInstanceUid ? { study: q.studyInstanceUid } : {}), ...(q.seriesInstanceUid ? { series: q.seriesInstanceUid } : {}) });
}

/**
 * Runs a parsed query and returns the response array: per entity the default attributes of
 * the levels in scope (PS3.18 Tables 10.6.3-3/4/5), the unique keys of the levels above, the
 * match keys and the includefield attributes, each object sorted by tag. Throws
 * PipelineError SERVICE_* when the catalog fails. Read-only; safe to repeat.
 */
export async function runQido(reader: ResearchCatalogReader, q: QidoQuery, options: { abortSignal?: AbortSignal } = {}): Promise<DicomJson[]> {
  const docs = await collect(reader, q, options);
  const levels = responseLevels(q);

  const required = new Set<string>(q.keys.map((k) => k.tag));
  const conditional = new Set<string>(q.includeFields === 'all' ? [] : q.includeFields);
  for (const level of levels) {
    for (const tag of DEFAULTS[level].required) required.add(tag);
    for (const tag of DEFAULTS[level].conditional) conditional.add(tag);
  }
  // The unique keys of the levels above identify where an entity sits in the hierarchy.
  for (const level of LEVEL_ORDER.slice(0, LEVEL_ORDER.indexOf(q.level) + 1)) {
    required.add(level === 'study' ? T.StudyInstanceUID : level === 'series' ? T.SeriesInstanceUID : T.SOPInstanceUID);
  }

  const wants = (tag: string) => q.includeFields === 'all' || required.has(tag) || conditional.has(tag);
  const needStudies = q.level !== 'study' && [...STUDY_SUMMARY_TAGS].some(wants);
  const needSeries = q.level === 'instance' && [...SERIES_SUMMARY_TAGS].some(wants);
  const studyUids = [...new Set(docs.map((d) => d.studyInstanceUid))];
  const seriesUids = [...new Set(docs.flatMap((d) => (d.seriesInstanceUid ? [d.seriesInstanceUid] : [])))];
  const studies = needStudies ? await summariesOf(reader, 'study', studyUids, studyUids, options) : new Map<string, QidoDocument>();
  const series = needSeries ? await summariesOf(reader, 'series', seriesUids, studyUids, options) : new Map<string, QidoDocument>();

  return docs.map((doc) => {
    const study = studies.get(doc.studyInstanceUid);
    const ser = doc.seriesInstanceUid ? series.get(doc.seriesInstanceUid) : undefined;
    const out: DicomJson = {};
    const candidates = new Set<string>([...required, ...conditional]);
    if (q.includeFields === 'all') {
      for (const tag of Object.keys(doc.dicom)) candidates.add(tag);
      if (q.level === 'study' || study) for (const tag of STUDY_SUMMARY_TAGS) candidates.add(tag);
      if (q.level === 'series' || ser) for (const tag of SERIES_SUMMARY_TAGS) candidates.add(tag);
    }
    for (const tag of candidates) {
      const attr = attributeOf(doc, tag, study, ser);
      if (attr) out[tag] = attr;
      else if (required.has(tag)) out[tag] = emptyAttribute(tag);
    }
    return sortedByTag(out);
  });
}

/** The HTTP response of a QIDO-RS request, for any of its resources. */
export function createQidoHandler(getReader: () => Promise<ResearchCatalogReader>, level: QidoLevel) {
  return async (request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> => {
    try {
      const study = request.params.study;
      const series = request.params.series;
      const q = parseQidoRequest(level, request.query, {
        ...(study !== undefined ? { study } : {}),
        ...(series !== undefined ? { series } : {}),
      });
      const body = await runQido(await getReader(), q);
      const headers: Record<string, string> = { 'content-type': 'application/dicom+json' };
      if (q.warnings.length > 0) headers['warning'] = q.warnings.map((w) => `299 dicomweb "${w}"`).join(', ');
      // No match is 200 with [] rather than 204: a client parses every answer the same way,
      // which PS3.18 allows (a success response carries the list of matches, possibly empty).
      return { status: 200, headers, jsonBody: body };
    } catch (e) {
      const status = httpStatusFor(e);
      // Neither the query values nor the catalog's answer are logged: only the failure class.
      if (status >= 500) context.error(`qido ${level}: ${status}`, e instanceof PipelineError ? e.code : 'unexpected error');
      else context.warn(`qido ${level}: ${status} ${e instanceof PipelineError ? e.code : ''}`);
      return { status, jsonBody: httpErrorBody(e) };
    }
  };
}
