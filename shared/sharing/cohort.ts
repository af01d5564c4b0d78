/**
 * An agreement's cohort resolved over the research catalog: the research instances it names.
 * The filter is parsed and turned into SQL by the QIDO-RS modules (shared/catalog/qido/), at
 * the instance level, without QIDO's paging limits (an export takes every match).
 */
import { parseQidoRequest } from '../catalog/qido';
import type { QidoDocument, QidoQuery } from '../catalog/qido/model';
import { buildCatalogQuery, buildStudyPassQuery, type CatalogQuery } from '../catalog/qido/query';
import type { ResearchCatalogReader } from '../catalog/researchCatalog';
import { type Cohort, cohortQueryParams } from './agreement';

/** One research instance of a cohort: what an export message carries (research UIDs only). */
export interface CohortInstance {
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
}

async function* run(reader: ResearchCatalogReader, q: CatalogQuery, abortSignal?: AbortSignal): AsyncGenerator<QidoDocument> {
  for await (const doc of reader.query<QidoDocument>(q.sql, { ...(q.partitionKey !== undefined ? { partitionKey: q.partitionKey } : {}), pageSize: 500, abortSignal })) {
    if (!q.postFilter || q.postFilter(doc)) yield doc;
  }
}

function cohortQuery(cohort: Cohort): QidoQuery {
  return parseQidoRequest('instance', cohortQueryParams(cohort.filter ?? {}), {});
}

/**
 * Every research instance the cohort names, each once, study by study. Throws SERVICE_* on
 * catalog faults. A read: safe to repeat (the answer follows the catalog as it is then).
 */
export async function* resolveCohort(reader: ResearchCatalogReader, cohort: Cohort, options: { abortSignal?: AbortSignal } = {}): AsyncGenerator<CohortInstance> {
  const q = cohortQuery(cohort);
  let studies: string[] | undefined = cohort.studies;
  const studyPass = buildStudyPassQuery(q);
  if (studyPass) {
    // Study summaries (ModalitiesInStudy) are matched on the study documents first.
    const matched: string[] = [];
    for await (const doc of run(reader, studyPass, options.abortSignal)) matched.push(doc.studyInstanceUid);
    studies = studies ? studies.filter((s) => matched.includes(s)) : matched;
  }
  const seen = new Set<string>();
  const queries = studies ? studies.map((s) => buildCatalogQuery(q, s)) : [buildCatalogQuery(q)];
  for (const query of queries) {
    for await (const doc of run(reader, query, options.abortSignal)) {
      const sop = doc.sopInstanceUid;
      if (!sop || !doc.seriesInstanceUid || seen.has(sop)) continue;
      seen.add(sop);
      yield { studyInstanceUid: doc.studyInstanceUid, seriesInstanceUid: doc.seriesInstanceUid, sopInstanceUid: sop };
    }
  }
}
