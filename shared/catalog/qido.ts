/**
 * QIDO-RS (PS3.18 10.6) over the research catalog, in four parts as dicom-server keeps them:
 * query parsing (qido/parse.ts: every 400 is raised there), query generation (qido/query.ts:
 * one parameterised Cosmos DB SQL query per level), matching in code (qido/match.ts: what SQL
 * cannot decide, in time linear in the value) and response building (qido/response.ts: runs
 * the queries within the request's budget and builds the DICOM JSON).
 */
export { keyMatches, matchesWildcard, wildcardLiterals } from './qido/match';
export {
  levelsInScope,
  QIDO_DEFAULT_LIMIT,
  QIDO_DEFAULT_LIMITS,
  QIDO_MAX_LIMIT,
  type QidoDocument,
  type QidoLevel,
  type QidoLimits,
  type QidoMatcher,
  type QidoMatchKey,
  type QidoQuery,
} from './qido/model';
export { parseQidoRequest } from './qido/parse';
export { buildCatalogQuery, buildStudyPassQuery, type CatalogQuery, type QueryShape } from './qido/query';
export { createQidoHandler, dicomwebRootOf, type QidoHandlerOptions, runQido, type RunQidoOptions } from './qido/response';
