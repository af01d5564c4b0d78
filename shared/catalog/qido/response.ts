/**
 * QIDO-RS response building: runs the queries of query.ts within the request's budget, reads the
 * summaries the response needs, and builds the DICOM JSON of each match (PS3.18 10.6.3).
 *
 * Offset and limit are applied in code: the Cosmos DB emulator server has no OFFSET/LIMIT, and a
 * post-filter has to see every candidate anyway. Only `dicom` and the summary fields of the
 * catalog documents are ever returned: they are built from the de-identified data set, so
 * nothing identified can appear in a response.
 */
import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';

import { lookupTag } from '../../dicom/dictionary';
import { type DicomJson, type DicomJsonAttribute, jsonKey } from '../../dicom/json';
import type { TagKeyword } from '../../dicom/tags';
import { ErrorCodes, httpErrorBody, httpStatusFor, PipelineError } from '../../errors';
import type { ResearchCatalogReader } from '../researchCatalog';
import {
  FIELD_OF_TAG,
  LEVEL_ORDER,
  levelsInScope,
  QIDO_DEFAULT_LIMITS,
  QIDO_MAX_LIMIT,
  type QidoDocument,
  type QidoLevel,
  type QidoLimits,
  type QidoQuery,
  SERIES_SUMMARY_TAGS,
  STUDY_SUMMARY_TAGS,
  T,
} from './model';
import { parseQidoRequest } from './parse';
import { buildCatalogQuery, buildStudyPassQuery, buildSummaryQuery, type CatalogQuery } from './query';

/**
 * Default return attributes per level (PS3.18 Tables 10.6.3-3, -4, -5). `required` ones are
 * returned empty when unknown, as C-FIND returns required keys; `conditional` ones only when
 * the catalog holds a value. Retrieve URL (0008,1190), present when the entity can be
 * retrieved, is added by runQido from the DICOMweb root (every research entity can be).
 */
const DEFAULTS: Readonly<Record<QidoLevel, { required: TagKeyword[]; conditional: TagKeyword[] }>> = {
  study: {
    required: ['StudyDate', 'StudyTime', 'AccessionNumber', 'ModalitiesInStudy', 'ReferringPhysicianName', 'PatientName', 'PatientID', 'PatientBirthDate', 'PatientSex', 'StudyInstanceUID', 'StudyID', 'NumberOfStudyRelatedSeries', 'NumberOfStudyRelatedInstances'],
    conditional: ['SpecificCharacterSet', 'InstanceAvailability', 'TimezoneOffsetFromUTC'],
  },
  series: {
    required: ['Modality', 'SeriesInstanceUID', 'SeriesNumber', 'NumberOfSeriesRelatedInstances'],
    conditional: ['SpecificCharacterSet', 'TimezoneOffsetFromUTC', 'SeriesDescription', 'PerformedProcedureStepStartDate', 'PerformedProcedureStepStartTime', 'RequestAttributesSequence'],
  },
  instance: {
    required: ['SOPClassUID', 'SOPInstanceUID', 'InstanceNumber'],
    conditional: ['SpecificCharacterSet', 'InstanceAvailability', 'TimezoneOffsetFromUTC', 'Rows', 'Columns', 'BitsAllocated', 'NumberOfFrames'],
  },
};

/** Documents read per round trip: enough for a typical page, bounded for post-filtered scans. */
function pageSizeFor(q: QidoQuery, filtered: boolean): number {
  return filtered ? QIDO_MAX_LIMIT : Math.min(q.offset + q.limit, QIDO_MAX_LIMIT);
}

export interface RunQidoOptions {
  abortSignal?: AbortSignal;
  /**
   * The DICOMweb root the request came through (`https://host/api/dicomweb`): each match then
   * carries its Retrieve URL (0008,1190), the WADO-RS resource of its study, series or instance.
   */
  retrieveRoot?: string;
  /** Catalog documents and time one request may use; default QIDO_DEFAULT_LIMITS. */
  limits?: Pick<QidoLimits, 'maxScannedDocuments' | 'timeBudgetMs'>;
}

/**
 * The work one request may do: documents read (skipped and filtered out ones too) and time.
 * Its signal aborts a catalog read in flight once the time is up.
 */
class RequestBudget {
  private scanned = 0;
  private readonly deadline: number;
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  readonly signal: AbortSignal;

  constructor(private readonly limits: Pick<QidoLimits, 'maxScannedDocuments' | 'timeBudgetMs'>, outer?: AbortSignal) {
    this.deadline = Date.now() + limits.timeBudgetMs;
    this.timer = setTimeout(() => this.controller.abort(), limits.timeBudgetMs);
    this.timer.unref?.();
    this.signal = outer ? AbortSignal.any([outer, this.controller.signal]) : this.controller.signal;
  }

  /** Counts one document read; throws QUERY_TOO_BROAD past either limit. */
  read(): void {
    if (++this.scanned > this.limits.maxScannedDocuments) {
      throw new PipelineError(
        ErrorCodes.QUERY_TOO_BROAD,
        `the query reads more than ${this.limits.maxScannedDocuments} catalog entries: narrow it (more keys, a literal start before the first wild card, a study) or page with a smaller offset`,
      );
    }
    if (Date.now() > this.deadline) throw this.timeUp();
  }

  /** A failure of the catalog read: QUERY_TOO_BROAD when it was the budget that aborted it. */
  translate(e: unknown): unknown {
    return this.controller.signal.aborted && !(e instanceof PipelineError && e.code === ErrorCodes.QUERY_TOO_BROAD) ? this.timeUp() : e;
  }

  close(): void {
    clearTimeout(this.timer);
  }

  private timeUp(): PipelineError {
    return new PipelineError(
      ErrorCodes.QUERY_TOO_BROAD,
      `the query needs more than ${this.limits.timeBudgetMs} ms: narrow it (more keys, a literal start before the first wild card, a study)`,
    );
  }
}

async function collect(reader: ResearchCatalogReader, q: QidoQuery, budget: RequestBudget): Promise<QidoDocument[]> {
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
      abortSignal: budget.signal,
    });
    for await (const doc of iterable) {
      budget.read();
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
  budget: RequestBudget,
): Promise<Map<string, QidoDocument>> {
  const found = new Map<string, QidoDocument>();
  if (uids.length === 0) return found;
  const field = type === 'study' ? 'studyInstanceUid' : 'seriesInstanceUid';
  const iterable = reader.query<QidoDocument>(buildSummaryQuery(type, uids), {
    ...(studyUids.length === 1 ? { partitionKey: studyUids[0] as string } : {}),
    pageSize: uids.length,
    abortSignal: budget.signal,
  });
  for await (const doc of iterable) {
    budget.read();
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
 * PipelineError QUERY_TOO_BROAD (413) when it would read more documents or take longer than
 * `limits` allow, SERVICE_* when the catalog fails. Read-only; safe to repeat.
 */
export async function runQido(reader: ResearchCatalogReader, q: QidoQuery, options: RunQidoOptions = {}): Promise<DicomJson[]> {
  const budget = new RequestBudget(options.limits ?? QIDO_DEFAULT_LIMITS, options.abortSignal);
  try {
    const matches = await answer(reader, q, budget);
    const root = options.retrieveRoot;
    return root === undefined ? matches : matches.map((ds) => withRetrieveUrl(ds, root, q.level));
  } catch (e) {
    throw budget.translate(e);
  } finally {
    budget.close();
  }
}

const RETRIEVE_URL = jsonKey('RetrieveURL');

/**
 * The WADO-RS resource of a match (PS3.18 10.4.1): its study, series or instance, as the
 * query's level says, from the unique keys every match carries. UIDs are digits and dots:
 * nothing to escape.
 */
function withRetrieveUrl(ds: DicomJson, root: string, level: QidoLevel): DicomJson {
  const uid = (tag: string) => {
    const v = ds[tag]?.Value?.[0];
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  const study = uid(T.StudyInstanceUID);
  const series = uid(T.SeriesInstanceUID);
  const instance = uid(T.SOPInstanceUID);
  if (study === undefined || (level !== 'study' && series === undefined) || (level === 'instance' && instance === undefined)) return ds;
  let url = `${root}/studies/${study}`;
  if (level !== 'study') url += `/series/${series}`;
  if (level === 'instance') url += `/instances/${instance}`;
  return sortedByTag({ ...ds, [RETRIEVE_URL]: { vr: 'UR', Value: [url] } });
}

/**
 * The DICOMweb root of a QIDO-RS request URL: the URL up to its `/studies`, `/series` or
 * `/instances` resource (`https://host/api/dicomweb/studies/1.2/series` → `https://host/api/dicomweb`).
 */
export function dicomwebRootOf(requestUrl: string): string {
  const url = new URL(requestUrl);
  const m = /^(.*?)\/(studies|series|instances)(\/|$)/.exec(url.pathname);
  return `${url.origin}${m ? m[1] : url.pathname.replace(/\/+$/, '')}`;
}

async function answer(reader: ResearchCatalogReader, q: QidoQuery, budget: RequestBudget): Promise<DicomJson[]> {
  const docs = await collect(reader, q, budget);
  const levels = responseLevels(q);

  const required = new Set<string>(q.keys.map((k) => k.tag));
  const conditional = new Set<string>(q.includeFields === 'all' ? [] : q.includeFields);
  for (const level of levels) {
    for (const keyword of DEFAULTS[level].required) required.add(jsonKey(keyword));
    for (const keyword of DEFAULTS[level].conditional) conditional.add(jsonKey(keyword));
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
  const studies = needStudies ? await summariesOf(reader, 'study', studyUids, studyUids, budget) : new Map<string, QidoDocument>();
  const series = needSeries ? await summariesOf(reader, 'series', seriesUids, studyUids, budget) : new Map<string, QidoDocument>();

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

export interface QidoHandlerOptions {
  /** The bounds on one request, read for each request (the QIDO_* settings, in the function app). */
  limits: () => QidoLimits | Promise<QidoLimits>;
}

/** The HTTP response of a QIDO-RS request, for any of its resources. */
export function createQidoHandler(getReader: () => Promise<ResearchCatalogReader>, level: QidoLevel, options: QidoHandlerOptions) {
  return async (request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> => {
    try {
      const limits = await options.limits();
      const study = request.params.study;
      const series = request.params.series;
      const q = parseQidoRequest(level, request.query, {
        ...(study !== undefined ? { study } : {}),
        ...(series !== undefined ? { series } : {}),
      }, limits);
      const body = await runQido(await getReader(), q, { limits, retrieveRoot: dicomwebRootOf(request.url) });
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

