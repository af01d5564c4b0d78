/**
 * GET /api/statistics: counts of the research catalog, with the QIDO-RS series-level keys as
 * filters, suppressed for research use; and, for operators, the ingestion outcomes of the
 * restricted index.
 */
import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';

import type { SeriesStatistics } from '../catalog/documents';
import { buildCatalogQuery, buildStudyPassQuery, parseQidoRequest, type QidoDocument, type QidoLimits } from '../catalog/qido';
import type { ResearchCatalogReader } from '../catalog/researchCatalog';
import type { DicomJson } from '../dicom/json';
import { ErrorCodes, httpErrorBody, httpStatusFor, PipelineError } from '../errors';
import { aggregate, type RawStatistics, type SeriesRow, seriesStatistics, type StatisticsAnswer, suppressSmallCells } from './aggregate';

/** Outcomes of the source files in the restricted index: files per status, and per status and error code. */
export interface IngestionOutcomes {
  byStatus: Record<string, number>;
  byError: { status: string; errorCode: string; files: number }[];
}

/** Reads the restricted index's outcomes. Read-only; throws PipelineError SERVICE_* on faults. */
export interface IngestionOutcomeReader {
  outcomes(options?: { abortSignal?: AbortSignal }): Promise<IngestionOutcomes>;
}

const SERIES_PROJECTION = 'SELECT c.id, c.type, c.studyInstanceUid, c.seriesInstanceUid, c.modality, c.dicom, c.statistics FROM c';
const STUDY_PROJECTION = 'SELECT c.id, c.type, c.studyInstanceUid, c.dicom, c.modalitiesInStudy FROM c';

const NOT_FILTERS = new Set(['limit', 'offset', 'includefield', 'fuzzymatching', 'emptyvaluematching', 'multiplevaluematching']);

/**
 * Parses the filters: the keys QIDO-RS accepts at `/series` (study and series attributes,
 * ModalitiesInStudy too). Throws QUERY_INVALID naming the bad key.
 */
export function parseStatisticsFilters(query: URLSearchParams, limits: QidoLimits) {
  for (const name of query.keys()) {
    if (NOT_FILTERS.has(name.toLowerCase())) throw new PipelineError(ErrorCodes.QUERY_INVALID, `${name} is not a filter of the statistics (study and series attributes only)`);
  }
  return parseQidoRequest('series', query, {}, limits);
}

type SeriesDoc = QidoDocument & { statistics?: SeriesStatistics };

/**
 * The raw (unsuppressed) statistics of the series matching the filters. Reads one summary per
 * matching series; a series written before its summary carried a share is counted from its
 * instances. Read-only.
 */
export async function catalogStatistics(reader: ResearchCatalogReader, query: URLSearchParams, limits: QidoLimits, options: { abortSignal?: AbortSignal } = {}): Promise<RawStatistics> {
  const q = parseStatisticsFilters(query, limits);
  const read = { pageSize: 5000, ...(options.abortSignal ? { abortSignal: options.abortSignal } : {}) };
  let studies: Set<string> | undefined;
  const studyPass = buildStudyPassQuery(q, { projection: STUDY_PROJECTION, ordered: false });
  if (studyPass) {
    studies = new Set();
    for await (const doc of reader.query<QidoDocument>(studyPass.sql, { ...read, ...(studyPass.partitionKey ? { partitionKey: studyPass.partitionKey } : {}) })) {
      if (!studyPass.postFilter || studyPass.postFilter(doc)) studies.add(doc.studyInstanceUid);
    }
  }
  const seriesQuery = buildCatalogQuery(q, undefined, { projection: SERIES_PROJECTION, ordered: false });
  const rows: SeriesRow[] = [];
  for await (const doc of reader.query<SeriesDoc>(seriesQuery.sql, { ...read, ...(seriesQuery.partitionKey ? { partitionKey: seriesQuery.partitionKey } : {}) })) {
    if (seriesQuery.postFilter && !seriesQuery.postFilter(doc)) continue;
    if (studies && !studies.has(doc.studyInstanceUid)) continue;
    if (!doc.seriesInstanceUid) continue;
    const statistics = doc.statistics ?? await shareFromInstances(reader, doc.studyInstanceUid, doc.seriesInstanceUid, read);
    rows.push({ studyInstanceUid: doc.studyInstanceUid, seriesInstanceUid: doc.seriesInstanceUid, ...(doc.modality !== undefined ? { modality: doc.modality } : {}), dicom: doc.dicom as DicomJson, statistics });
  }
  return aggregate(rows);
}

async function shareFromInstances(reader: ResearchCatalogReader, study: string, series: string, read: { abortSignal?: AbortSignal }): Promise<SeriesStatistics> {
  const rows: { sopClassUid: string; size?: number; transferSyntaxUid?: string }[] = [];
  const sql = {
    query: "SELECT c.sopClassUid, c.size, c.transferSyntaxUid FROM c WHERE c.type = 'instance' AND c.studyInstanceUid = @st AND c.seriesInstanceUid = @se",
    parameters: [{ name: '@st', value: study }, { name: '@se', value: series }],
  };
  for await (const r of reader.query<(typeof rows)[number]>(sql, { ...read, partitionKey: study })) rows.push(r);
  return seriesStatistics(rows);
}

export interface StatisticsAnswerBody extends StatisticsAnswer {
  /** What the year breakdown counts. */
  yearOf: 'shifted StudyDate';
  /** Only for callers with Operations.Read. */
  ingestions?: IngestionOutcomes;
}

export interface StatisticsHandlerDeps {
  reader: ResearchCatalogReader;
  outcomes: IngestionOutcomeReader;
  limits: QidoLimits;
  minCellSize: number;
}

/**
 * The handler behind the guard: `parts` says what the caller's roles allow (research counts
 * with Research.Read, ingestion outcomes with Operations.Read).
 */
export async function answerStatistics(
  request: HttpRequest,
  context: InvocationContext,
  deps: StatisticsHandlerDeps,
  parts: { research: boolean; operations: boolean },
): Promise<HttpResponseInit> {
  try {
    const body: Partial<StatisticsAnswerBody> = {};
    if (parts.research) {
      Object.assign(body, suppressSmallCells(await catalogStatistics(deps.reader, request.query, deps.limits), deps.minCellSize), { yearOf: 'shifted StudyDate' });
    } else if ([...request.query.keys()].length > 0) {
      throw new PipelineError(ErrorCodes.QUERY_INVALID, 'filters apply to the research counts, which need the app role Research.Read');
    }
    if (parts.operations) body.ingestions = await deps.outcomes.outcomes();
    return { status: 200, headers: { 'cache-control': 'no-store' }, jsonBody: body };
  } catch (e) {
    const status = httpStatusFor(e);
    // Neither filter values nor counts are logged: only the failure class.
    if (status >= 500) context.error(`statistics: ${status}`, e instanceof PipelineError ? e.code : 'unexpected error');
    else context.warn(`statistics: ${status} ${e instanceof PipelineError ? e.code : ''}`);
    return { status, jsonBody: httpErrorBody(e) };
  }
}
