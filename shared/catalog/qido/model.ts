/**
 * What the QIDO-RS modules share: the parsed query, the documents it reads, the attributes it
 * can match and return by level, and the bounds on the work of one request.
 */
import { type DicomJson, jsonKey, jsonKeys } from '../../dicom/json';
import type { TagKeyword } from '../../dicom/tags';

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

/** A catalog document as the query side reads it (the projection of query.ts). */
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

/**
 * Bounds on what one request may ask for and do. The settings QIDO_MAX_PATTERN_LENGTH,
 * QIDO_MAX_WILDCARDS, QIDO_MAX_SCANNED_DOCUMENTS and QIDO_TIME_BUDGET_MS set them.
 */
export interface QidoLimits {
  /** Characters of the wild card patterns of one request, all keys together (400 QUERY_INVALID beyond). */
  maxPatternLength: number;
  /** `*` and `?` in the wild card patterns of one request, all keys together (400 QUERY_INVALID beyond). */
  maxWildcards: number;
  /** Most catalog documents one request reads, skipped and filtered ones included (413 QUERY_TOO_BROAD beyond). */
  maxScannedDocuments: number;
  /** Wall-clock time one request may spend reading the catalog (413 QUERY_TOO_BROAD beyond). */
  timeBudgetMs: number;
}

export const QIDO_DEFAULT_LIMITS: Readonly<QidoLimits> = {
  maxPatternLength: 128,
  maxWildcards: 32,
  maxScannedDocuments: 50_000,
  timeBudgetMs: 10_000,
};

export const QIDO_DEFAULT_LIMIT = 100;
export const QIDO_MAX_LIMIT = 1000;

/** DICOM JSON keys of the attributes the QIDO code names. */
export const T = jsonKeys(
  'SpecificCharacterSet',
  'SOPClassUID',
  'SOPInstanceUID',
  'InstanceAvailability',
  'Modality',
  'ModalitiesInStudy',
  'TimezoneOffsetFromUTC',
  'StudyInstanceUID',
  'SeriesInstanceUID',
  'NumberOfStudyRelatedSeries',
  'NumberOfStudyRelatedInstances',
  'NumberOfSeriesRelatedInstances',
);

/**
 * Attributes that can be matched, by the level of the entity they describe. The required
 * matching keys of PS3.18 Table 10.6.1-5 plus a few that research users filter on. Patient
 * attributes sit at the study level: the catalog has no patient documents.
 */
const SEARCHABLE_BY_KEYWORD: Readonly<Partial<Record<TagKeyword, QidoLevel>>> = {
  PatientName: 'study',
  PatientID: 'study',
  PatientBirthDate: 'study',
  PatientSex: 'study',
  StudyDate: 'study',
  StudyTime: 'study',
  AccessionNumber: 'study',
  ModalitiesInStudy: 'study',
  ReferringPhysicianName: 'study',
  StudyDescription: 'study',
  StudyInstanceUID: 'study',
  StudyID: 'study',
  Modality: 'series',
  SeriesDate: 'series',
  SeriesTime: 'series',
  SeriesDescription: 'series',
  BodyPartExamined: 'series',
  // The equipment of the series ("per scanner model": the statistics' filters); indexed already.
  Manufacturer: 'series',
  ManufacturerModelName: 'series',
  SeriesInstanceUID: 'series',
  SeriesNumber: 'series',
  PerformedProcedureStepStartDate: 'series',
  PerformedProcedureStepStartTime: 'series',
  SOPClassUID: 'instance',
  SOPInstanceUID: 'instance',
  ContentDate: 'instance',
  ContentTime: 'instance',
  InstanceNumber: 'instance',
};
export const SEARCHABLE: Readonly<Record<string, QidoLevel>> = Object.fromEntries(
  Object.entries(SEARCHABLE_BY_KEYWORD).map(([keyword, level]) => [jsonKey(keyword as TagKeyword), level]),
);

/**
 * Attributes the ingestion also writes as top-level fields on every document that carries
 * them: matching on those does not depend on `dicom` holding the value, and
 * `studyInstanceUid` is the partition key.
 */
export const FIELD_OF_TAG: Readonly<Record<string, string>> = {
  [T.StudyInstanceUID]: 'studyInstanceUid',
  [T.SeriesInstanceUID]: 'seriesInstanceUid',
  [T.SOPInstanceUID]: 'sopInstanceUid',
  [T.SOPClassUID]: 'sopClassUid',
  [T.Modality]: 'modality',
};

/** Study summaries computed over the series of a study: only study documents hold them. */
export const STUDY_SUMMARY_TAGS = new Set<string>([T.ModalitiesInStudy, T.NumberOfStudyRelatedSeries, T.NumberOfStudyRelatedInstances]);
export const SERIES_SUMMARY_TAGS = new Set<string>([T.NumberOfSeriesRelatedInstances]);

export const LEVEL_ORDER: readonly QidoLevel[] = ['study', 'series', 'instance'];

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
