/** GET /api/audit?caller=&from=&to=&study=&limit=: the access audit for operators, newest first. */
import type { HttpResponseInit } from '@azure/functions';

import { ErrorCodes, httpErrorBody, httpStatusFor, PipelineError } from '../errors';
import type { AccessAuditStore, AccessQuery } from './accessAudit';

export const AUDIT_DEFAULT_LIMIT = 100;
export const AUDIT_MAX_LIMIT = 1000;
/** Without `from`, this far back from `to`. */
const DEFAULT_WINDOW_MS = 30 * 24 * 60 * 60 * 1000;
/** A caller's records are read month by month; ten years bounds the number of partitions read. */
const MAX_WINDOW_MS = 10 * 366 * 24 * 60 * 60 * 1000;

const ISO_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?$/;

function time(name: string, value: string | null): Date | undefined {
  if (value === null || value === '') return undefined;
  const d = new Date(value);
  if (!ISO_TIME.test(value) || Number.isNaN(d.getTime())) {
    throw new PipelineError(ErrorCodes.QUERY_INVALID, `"${name}" must be an ISO 8601 date or date-time (2026-12-01 or 2026-12-01T10:00:00Z)`);
  }
  return d;
}

/** Validates the query parameters; throws QUERY_INVALID naming the fault. */
export function parseAuditQuery(params: URLSearchParams, now: Date = new Date()): AccessQuery {
  const caller = params.get('caller');
  if (caller !== null && !/^[A-Za-z0-9._@:-]{1,128}$/.test(caller)) {
    throw new PipelineError(ErrorCodes.QUERY_INVALID, '"caller" must be a caller id (oid or sub: letters, digits, . _ @ : -)');
  }
  const study = params.get('study');
  if (study !== null && !/^[0-9]+(\.[0-9]+)*$/.test(study)) throw new PipelineError(ErrorCodes.QUERY_INVALID, '"study" must be a research Study Instance UID');
  const to = time('to', params.get('to')) ?? now;
  const from = time('from', params.get('from')) ?? new Date(to.getTime() - DEFAULT_WINDOW_MS);
  if (from.getTime() >= to.getTime()) throw new PipelineError(ErrorCodes.QUERY_INVALID, '"from" must be before "to"');
  if (to.getTime() - from.getTime() > MAX_WINDOW_MS) throw new PipelineError(ErrorCodes.QUERY_INVALID, '"from" and "to" may be at most ten years apart');
  const rawLimit = params.get('limit');
  const limit = rawLimit === null || rawLimit === '' ? AUDIT_DEFAULT_LIMIT : Number(rawLimit);
  if (!Number.isInteger(limit) || limit < 1 || limit > AUDIT_MAX_LIMIT) {
    throw new PipelineError(ErrorCodes.QUERY_INVALID, `"limit" must be a whole number from 1 to ${AUDIT_MAX_LIMIT}`);
  }
  return {
    ...(caller !== null ? { callerId: caller } : {}),
    ...(study !== null ? { studyInstanceUid: study } : {}),
    from: from.toISOString(),
    to: to.toISOString(),
    limit,
  };
}

export async function readAccessAudit(store: AccessAuditStore, params: URLSearchParams): Promise<HttpResponseInit> {
  try {
    const q = parseAuditQuery(params);
    const records = await store.query(q);
    return { status: 200, jsonBody: { from: q.from, to: q.to, records, truncated: records.length >= q.limit } };
  } catch (e) {
    return { status: httpStatusFor(e), jsonBody: httpErrorBody(e) };
  }
}
