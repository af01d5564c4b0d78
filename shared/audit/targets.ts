/** What each audited route touched, read from its request and its answer. Research identifiers only. */
import type { HttpRequest, HttpResponseInit } from '@azure/functions';

import { jsonKey } from '../dicom/json';
import type { TagKeyword } from '../dicom/tags';
import type { AccessTarget, ResearchUids } from './accessAudit';

const UID_TAGS: Record<keyof ResearchUids, { tag: string; keyword: TagKeyword; param: string }> = {
  studies: { tag: jsonKey('StudyInstanceUID'), keyword: 'StudyInstanceUID', param: 'study' },
  series: { tag: jsonKey('SeriesInstanceUID'), keyword: 'SeriesInstanceUID', param: 'series' },
  instances: { tag: jsonKey('SOPInstanceUID'), keyword: 'SOPInstanceUID', param: 'instance' },
};
const LEVELS = Object.keys(UID_TAGS) as (keyof ResearchUids)[];

function firstString(element: unknown): string | undefined {
  const value = (element as { Value?: unknown } | null | undefined)?.Value;
  const first = Array.isArray(value) ? value[0] : undefined;
  return typeof first === 'string' ? first : undefined;
}

/** Research UIDs in a DICOM JSON answer (QIDO-RS, metadata): study, series and SOP instance UIDs of every item. */
export function uidsInDicomJson(body: unknown): ResearchUids {
  const out: ResearchUids = { studies: [], series: [], instances: [] };
  if (!Array.isArray(body)) return out;
  for (const item of body) {
    if (!item || typeof item !== 'object') continue;
    for (const level of LEVELS) {
      const uid = firstString((item as Record<string, unknown>)[UID_TAGS[level].tag]);
      if (uid !== undefined) out[level].push(uid);
    }
  }
  return out;
}

/** UIDs a DICOMweb request names: path parameters and UID match keys (lists split on `,` or `\`). */
export function uidsInDicomwebRequest(request: HttpRequest): ResearchUids {
  const out: ResearchUids = { studies: [], series: [], instances: [] };
  for (const level of LEVELS) {
    const { tag, keyword, param } = UID_TAGS[level];
    const fromPath = request.params[param];
    if (fromPath) out[level].push(fromPath);
    for (const [key, value] of request.query.entries()) {
      if (key === keyword || key.toUpperCase() === tag) out[level].push(...value.split(/[,\\]/).filter(Boolean));
    }
  }
  return out;
}

/**
 * QIDO-RS: the UIDs answered, the UIDs asked for, and the query keys (not their values). Throws
 * when a 200 carries no DICOM JSON array (an answer in another shape could not be accounted for,
 * so the gate withholds it rather than record it as empty).
 */
export function qidoAccessTarget(request: HttpRequest, response: HttpResponseInit): AccessTarget {
  if ((response.status ?? 200) === 200 && !Array.isArray(response.jsonBody)) throw new Error('a QIDO-RS answer that is not a DICOM JSON array');
  return {
    returned: (response.status ?? 200) === 200 ? uidsInDicomJson(response.jsonBody) : undefined,
    requested: uidsInDicomwebRequest(request),
    queryKeys: [...new Set(request.query.keys())],
  };
}

/** The operations view: the research UIDs it showed and the source file's content hash (never its URL). Throws when a 200 carries no JSON object. */
export function ingestionAccessTarget(_request: HttpRequest, response: HttpResponseInit): AccessTarget {
  if ((response.status ?? 200) === 200 && (typeof response.jsonBody !== 'object' || response.jsonBody === null)) throw new Error('an operations view answer that is not a JSON object');
  const body = (response.status ?? 200) === 200 ? (response.jsonBody as { research?: Record<string, unknown>; sha256?: unknown } | undefined) : undefined;
  const research = body?.research;
  const str = (v: unknown) => (typeof v === 'string' ? [v] : []);
  return {
    returned: research
      ? { studies: str(research.studyInstanceUid), series: str(research.seriesInstanceUid), instances: str(research.sopInstanceUid) }
      : undefined,
    ...(typeof body?.sha256 === 'string' ? { sourceSha256: body.sha256 } : {}),
  };
}

/** Statistics: counts only, no UIDs answered; the filter keys (not their values) and the UIDs they name. */
export function statisticsAccessTarget(request: HttpRequest, _response: HttpResponseInit): AccessTarget {
  return { requested: uidsInDicomwebRequest(request), queryKeys: [...new Set(request.query.keys())] };
}
