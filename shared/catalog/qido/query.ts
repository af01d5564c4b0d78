/**
 * QIDO-RS query generation: one parameterised Cosmos DB SQL query per level. What SQL can decide
 * is pushed into it (equality, IN, ranges, ARRAY_CONTAINS, and for wild cards the literal text:
 * STARTSWITH, ENDSWITH, CONTAINS); what it can only narrow down is left to a post-filter (match.ts).
 * User text only ever travels as a parameter.
 */
import type { SqlParameter, SqlQuery } from '../researchCatalog';
import { isMultiValued, keyMatches, wildcardLiterals } from './match';
import { FIELD_OF_TAG, type QidoDocument, type QidoLevel, type QidoMatcher, type QidoMatchKey, type QidoQuery, STUDY_SUMMARY_TAGS, T } from './model';

/** The fields a response can be built from: never the source key, rank or blob name. */
const PROJECTION = 'SELECT c.id, c.type, c.studyInstanceUid, c.seriesInstanceUid, c.sopInstanceUid, c.sopClassUid, c.modality, c.dicom, '
  + 'c.modalitiesInStudy, c.numberOfStudyRelatedSeries, c.numberOfStudyRelatedInstances, c.numberOfSeriesRelatedInstances FROM c';

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
      // The literal text of the pattern, which the database checks with its index or at
      // least before a document travels: `*?*?*#` reads only values that end with `#`.
      const { prefix, suffix, inner, exact } = wildcardLiterals(m.pattern);
      const conditions: string[] = [];
      if (prefix !== '') conditions.push(`STARTSWITH(${expr}, ${p.add(prefix)})`);
      if (suffix !== '') conditions.push(`ENDSWITH(${expr}, ${p.add(suffix)})`);
      for (const text of inner) conditions.push(`CONTAINS(${expr}, ${p.add(text)})`);
      if (conditions.length === 0) return { exact: false };
      return { sql: conditions.join(' AND '), exact };
    }
  }
}

/** Builds the SQL of one level for the given keys; `study`/`series` confine it to one study or series. */
/**
 * Another reader of the same matching (statistics): its own SELECT list (which must keep
 * c.dicom and the fields the post-filter reads) and no ORDER BY when it reads every match anyway.
 */
export interface QueryShape {
  projection?: string;
  ordered?: boolean;
}

function buildLevelQuery(level: QidoLevel, keys: QidoMatchKey[], scope: { study?: string; series?: string }, shape: QueryShape = {}): CatalogQuery {
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
    sql: { query: `${shape.projection ?? PROJECTION} WHERE ${where.join(' AND ')}${shape.ordered === false ? '' : ' ORDER BY c.id'}`, parameters: p.list },
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
export function buildCatalogQuery(q: QidoQuery, withinStudy?: string, shape?: QueryShape): CatalogQuery {
  const deferred = new Set(studyOnlyKeys(q));
  const study = withinStudy ?? q.studyInstanceUid;
  return buildLevelQuery(q.level, q.keys.filter((k) => !deferred.has(k)), {
    ...(study !== undefined ? { study } : {}),
    ...(q.seriesInstanceUid !== undefined ? { series: q.seriesInstanceUid } : {}),
  }, shape);
}

/** The first pass over study documents, when study summaries are matched below the study level; undefined otherwise. */
export function buildStudyPassQuery(q: QidoQuery, shape?: QueryShape): CatalogQuery | undefined {
  const summaries = studyOnlyKeys(q);
  if (summaries.length === 0) return undefined;
  const studyKeys = q.keys.filter((k) => k.level === 'study');
  return buildLevelQuery('study', studyKeys, q.studyInstanceUid !== undefined ? { study: q.studyInstanceUid } : {}, shape);
}


/** The summary documents (study or series) of the given UIDs, for the response's summary attributes. */
export function buildSummaryQuery(type: 'study' | 'series', uids: string[]): SqlQuery {
  const field = type === 'study' ? 'studyInstanceUid' : 'seriesInstanceUid';
  const p = new Params();
  return { query: `${PROJECTION} WHERE c.type = ${p.add(type)} AND c.${field} IN (${uids.map((u) => p.add(u)).join(', ')})`, parameters: p.list };
}
