/**
 * The access audit: who retrieved or queried what through the API, and what they were answered.
 * Append-only: one record per request, created, never replaced or deleted by the application.
 *
 * A record holds research identifiers only. Query values are not recorded (a researcher may
 * type anything into a search, names included), only which keys were used; UIDs a caller asked
 * for are recorded only when the research catalog answered with them, so a guessed original UID
 * never lands here. The operations view is recorded by the content hash of the source file and
 * the research UIDs it showed, never by the source URL.
 */
import type { Principal } from '../auth/principal';

export interface ResearchUids {
  studies: string[];
  series: string[];
  instances: string[];
}

export interface AccessRecord {
  /** Unique per request. */
  id: string;
  /** Partition key: `<callerId>|<YYYY-MM>`, so one caller's month is one logical partition. */
  pk: string;
  /** When the request was answered (ISO 8601, UTC). */
  time: string;
  callerId: string;
  callerKind: Principal['kind'];
  appId?: string;
  via: Principal['via'];
  /** The function that served the request (`qidoStudies`, `ingestions`, `audit`). */
  route: string;
  method: string;
  /** The app role the route requires. */
  role: string;
  status: number;
  /** Research UIDs in the answer. */
  returned: ResearchUids;
  /** Research UIDs the request named (path or query) that the catalog answered with. */
  requested: ResearchUids;
  /** Query keys used (names only, never values). */
  queryKeys?: string[];
  /** Operations view: SHA-256 of the source file's content, not its URL. */
  sourceSha256?: string;
  /** The Functions invocation id, to find the request in the logs. */
  invocationId: string;
  /**
   * The id of an earlier record of the same request that this one corrects: the access was
   * recorded while the answer was prepared (alongside its first read) and the answer then
   * came out otherwise (the read failed). The earlier record stays, as every record does.
   */
  supersedes?: string;
}

export interface AccessQuery {
  callerId?: string;
  /** Research study UID that the answer held. */
  studyInstanceUid?: string;
  /** Inclusive, ISO 8601. */
  from: string;
  /** Exclusive, ISO 8601. */
  to: string;
  limit: number;
}

export interface AccessAuditStore {
  /**
   * Appends one record. Never replaces: a record whose id exists already fails. Throws a
   * PipelineError (SERVICE_UNAVAILABLE, SERVICE_THROTTLED, SERVICE_TIMEOUT) when it cannot be written.
   */
  append(record: AccessRecord): Promise<void>;
  /** Newest first, at most `limit`; throws a PipelineError when the store cannot be read. */
  query(q: AccessQuery): Promise<AccessRecord[]>;
}

/** What a request touched, as the route describes it for the audit. */
export interface AccessTarget {
  returned?: Partial<ResearchUids>;
  requested?: Partial<ResearchUids>;
  queryKeys?: string[];
  sourceSha256?: string;
}

export function emptyUids(): ResearchUids {
  return { studies: [], series: [], instances: [] };
}

/** `YYYY-MM` of an ISO time: the month part of the partition key. */
export function monthOf(time: string): string {
  return time.slice(0, 7);
}

export function partitionKeyOf(callerId: string, time: string): string {
  return `${callerId}|${monthOf(time)}`;
}

const unique = (xs: string[] | undefined): string[] => [...new Set(xs ?? [])];

export interface NewAccessRecord {
  id: string;
  time: Date;
  principal: Principal;
  route: string;
  method: string;
  role: string;
  status: number;
  invocationId: string;
  target?: AccessTarget;
  supersedes?: string;
}

/** Builds the record; requested UIDs the answer does not hold are dropped (see the module comment). */
export function accessRecord(r: NewAccessRecord): AccessRecord {
  const time = r.time.toISOString();
  const returned: ResearchUids = {
    studies: unique(r.target?.returned?.studies),
    series: unique(r.target?.returned?.series),
    instances: unique(r.target?.returned?.instances),
  };
  const known = (level: keyof ResearchUids) => unique(r.target?.requested?.[level]).filter((uid) => returned[level].includes(uid));
  return {
    id: r.id,
    pk: partitionKeyOf(r.principal.callerId, time),
    time,
    callerId: r.principal.callerId,
    callerKind: r.principal.kind,
    ...(r.principal.appId ? { appId: r.principal.appId } : {}),
    via: r.principal.via,
    route: r.route,
    method: r.method,
    role: r.role,
    status: r.status,
    returned,
    requested: { studies: known('studies'), series: known('series'), instances: known('instances') },
    ...(r.target?.queryKeys && r.target.queryKeys.length > 0 ? { queryKeys: unique(r.target.queryKeys).sort() } : {}),
    ...(r.target?.sourceSha256 ? { sourceSha256: r.target.sourceSha256 } : {}),
    invocationId: r.invocationId,
    ...(r.supersedes ? { supersedes: r.supersedes } : {}),
  };
}

/** Whether two targets make the same record (the UIDs returned and named, the query keys, the content hash). */
export function sameTarget(a: AccessTarget | undefined, b: AccessTarget | undefined): boolean {
  const norm = (t: AccessTarget | undefined) => {
    const uids = (u: Partial<ResearchUids> | undefined) => [unique(u?.studies).sort(), unique(u?.series).sort(), unique(u?.instances).sort()];
    return JSON.stringify([uids(t?.returned), uids(t?.requested), unique(t?.queryKeys).sort(), t?.sourceSha256 ?? null]);
  };
  return norm(a) === norm(b);
}
