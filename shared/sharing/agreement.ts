/**
 * A data-sharing agreement: who receives what, de-identified how, for how long, and where.
 *
 * The cohort is a QIDO-RS-style filter over the research catalog (the same keys and matching
 * as `/api/dicomweb/instances`) and/or an explicit list of research study UIDs. The profile is
 * a built-in HIPAA pathway or a custom profile (shared/dicom/deid/profile.ts). Every value
 * here is de-identified or about the partner: an agreement never names a source.
 */
import { parseQidoRequest } from '../catalog/qido';
import { builtInProfile, loadProfile, type Profile } from '../dicom/deid/profile';
import { ErrorCodes, isPipelineError, PipelineError } from '../errors';

export type AgreementStatus = 'active' | 'suspended' | 'revoked';
export type AgreementMode = 'once' | 'live';

export type AgreementProfile = { builtIn: string } | { custom: unknown };

export interface Cohort {
  /** QIDO-RS query keys (keyword or tag to value), matched at the instance level. */
  filter?: Record<string, string>;
  /** Research StudyInstanceUIDs. With a filter too, an instance must match both. */
  studies?: string[];
}

export type Destination =
  /** A container in our account, shared by a SAS under a stored access policy (revoking deletes the policy). */
  | { kind: 'sas'; container: string }
  /** A container in the partner's account, written with our managed identity (granted Storage Blob Data Contributor there). */
  | { kind: 'managedIdentity'; accountUrl: string; container: string };

/** An agreement as stored: what was asked for, plus its identity, state and history. */
export interface Agreement extends AgreementRequest {
  /** `agr-<uuid>`; also the partition key. */
  id: string;
  status: AgreementStatus;
  /** Names the agreement's key (HKDF of the master key) in the partner's files: `<master key id>.<agreement id>`. */
  keyId: string;
  /** The SAS destination's stored access policy and URL (read and list only), while it is valid. */
  sas?: { policyId: string; url: string; expiresOn: string };
  createdAt: string;
  createdBy: string;
  updatedAt: string;
  /** Set on revocation: what the partner had received under the agreement by then. */
  sharedAtRevocation?: { files: number; bytes: number };
  /** Every status change, oldest first: who and when. */
  history: { status: AgreementStatus; at: string; by: string; reason?: string }[];
}

/** What `POST /api/agreements` takes. */
export interface AgreementRequest {
  partnerId: string;
  partnerName: string;
  profile: AgreementProfile;
  cohort: Cohort;
  mode: AgreementMode;
  validFrom: string;
  validUntil: string;
  destination: Destination;
}

const UID_RE = /^[0-9]+(\.[0-9]+)*$/;
const PARTNER_ID_RE = /^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$/;
const CONTAINER_RE = /^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/;
const MAX_STUDIES = 10_000;

function invalid(field: string, message: string): PipelineError {
  return new PipelineError(ErrorCodes.REQUEST_INVALID, `${field}: ${message}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function text(body: Record<string, unknown>, field: string, max: number): string {
  const v = body[field];
  if (typeof v !== 'string' || v.trim() === '') throw invalid(field, 'required, a non-empty string');
  if (v.length > max) throw invalid(field, `at most ${max} characters`);
  return v.trim();
}

function instant(body: Record<string, unknown>, field: string): string {
  const v = body[field];
  if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2}))?$/.test(v) || Number.isNaN(Date.parse(v))) {
    throw invalid(field, 'required, an ISO 8601 date or date-time (2026-01-31 or 2026-01-31T00:00:00Z)');
  }
  return new Date(v).toISOString();
}

/** The profile an agreement names, loaded. Throws REQUEST_INVALID naming `profile` when it is unknown or malformed. */
export function agreementProfile(p: AgreementProfile): Profile {
  if ('builtIn' in p) {
    const profile = builtInProfile(p.builtIn);
    if (!profile) throw invalid('profile.builtIn', 'not a built-in profile (basic, research-default, safe-harbor, limited-data-set)');
    return profile;
  }
  try {
    return loadProfile(p.custom);
  } catch (e) {
    if (isPipelineError(e, ErrorCodes.PROFILE_INVALID)) throw invalid('profile.custom', e.message);
    throw e;
  }
}

function parseProfile(v: unknown): AgreementProfile {
  if (!isRecord(v)) throw invalid('profile', 'required, { "builtIn": "<name>" } or { "custom": <profile> }');
  if (typeof v.builtIn === 'string' && v.custom === undefined) {
    const p = { builtIn: v.builtIn };
    agreementProfile(p);
    return p;
  }
  if (v.custom !== undefined && v.builtIn === undefined) {
    const p = { custom: v.custom };
    agreementProfile(p);
    return p;
  }
  throw invalid('profile', 'exactly one of builtIn or custom');
}

/** Checks a cohort filter as QIDO-RS would (instance level); throws REQUEST_INVALID naming `cohort.filter`. */
export function cohortQueryParams(filter: Record<string, string>): URLSearchParams {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(filter)) params.append(k, v);
  return params;
}

function parseCohort(v: unknown): Cohort {
  if (!isRecord(v)) throw invalid('cohort', 'required, { "filter": {...} } and/or { "studies": [...] }');
  const cohort: Cohort = {};
  if (v.filter !== undefined) {
    if (!isRecord(v.filter)) throw invalid('cohort.filter', 'an object of QIDO-RS keys to values');
    const filter: Record<string, string> = {};
    for (const [k, val] of Object.entries(v.filter)) {
      if (typeof val !== 'string') throw invalid(`cohort.filter.${k}`, 'a string value, as in a QIDO-RS query');
      if (['limit', 'offset', 'includefield', 'fuzzymatching'].includes(k.toLowerCase())) throw invalid(`cohort.filter.${k}`, 'not a matching key');
      filter[k] = val;
    }
    try {
      parseQidoRequest('instance', cohortQueryParams(filter), {});
    } catch (e) {
      if (isPipelineError(e, ErrorCodes.QUERY_INVALID)) throw invalid('cohort.filter', e.message);
      throw e;
    }
    cohort.filter = filter;
  }
  if (v.studies !== undefined) {
    if (!Array.isArray(v.studies) || v.studies.length === 0) throw invalid('cohort.studies', 'a non-empty array of research StudyInstanceUIDs');
    if (v.studies.length > MAX_STUDIES) throw invalid('cohort.studies', `at most ${MAX_STUDIES} studies`);
    v.studies.forEach((s, i) => {
      if (typeof s !== 'string' || s.length > 64 || !UID_RE.test(s)) throw invalid(`cohort.studies[${i}]`, 'not a UID');
    });
    cohort.studies = [...new Set(v.studies as string[])];
  }
  if (!cohort.filter && !cohort.studies) throw invalid('cohort', 'a filter, a study list, or both');
  return cohort;
}

function parseDestination(v: unknown): Destination {
  if (!isRecord(v)) throw invalid('destination', 'required, { "kind": "sas" | "managedIdentity", ... }');
  const container = v.container;
  if (typeof container !== 'string' || !CONTAINER_RE.test(container)) throw invalid('destination.container', 'a valid container name (3-63 lower-case letters, digits, single hyphens)');
  if (v.kind === 'sas') return { kind: 'sas', container };
  if (v.kind === 'managedIdentity') {
    let url: URL;
    try {
      url = new URL(String(v.accountUrl));
    } catch {
      throw invalid('destination.accountUrl', 'the partner storage account\'s blob endpoint (https://<account>.blob.core.windows.net)');
    }
    if (url.protocol !== 'https:') throw invalid('destination.accountUrl', 'must be https');
    return { kind: 'managedIdentity', accountUrl: url.origin, container };
  }
  throw invalid('destination.kind', 'sas or managedIdentity');
}

/** Validates a `POST /api/agreements` body. Throws REQUEST_INVALID with the bad field first in the message. */
export function parseAgreementRequest(body: unknown): AgreementRequest {
  if (!isRecord(body)) throw invalid('body', 'a JSON object');
  const partnerId = text(body, 'partnerId', 40);
  if (!PARTNER_ID_RE.test(partnerId)) throw invalid('partnerId', '3-40 lower-case letters, digits and hyphens');
  const partnerName = text(body, 'partnerName', 200);
  const profile = parseProfile(body.profile);
  const cohort = parseCohort(body.cohort);
  if (body.mode !== 'once' && body.mode !== 'live') throw invalid('mode', 'once or live');
  const validFrom = instant(body, 'validFrom');
  const validUntil = instant(body, 'validUntil');
  if (validUntil <= validFrom) throw invalid('validUntil', 'must be after validFrom');
  const destination = parseDestination(body.destination);
  return { partnerId, partnerName, profile, cohort, mode: body.mode, validFrom, validUntil, destination };
}

/** A `PATCH /api/agreements/{id}` body: a status change. */
export interface AgreementChange {
  status: 'active' | 'suspended' | 'revoked';
  reason?: string;
}

export function parseAgreementChange(body: unknown): AgreementChange {
  if (!isRecord(body)) throw invalid('body', 'a JSON object');
  const status = body.status;
  if (status !== 'active' && status !== 'suspended' && status !== 'revoked') throw invalid('status', 'active, suspended or revoked');
  const extra = Object.keys(body).filter((k) => k !== 'status' && k !== 'reason');
  if (extra.length) throw invalid(extra[0] as string, 'cannot be changed; only status (and a reason) can');
  if (body.reason !== undefined && (typeof body.reason !== 'string' || body.reason.length > 500)) throw invalid('reason', 'a string of at most 500 characters');
  return { status, ...(typeof body.reason === 'string' ? { reason: body.reason } : {}) };
}

/**
 * The status an agreement goes to. Throws STATE_CONFLICT for a change out of `revoked` (final).
 */
export function nextStatus(current: AgreementStatus, wanted: AgreementStatus): AgreementStatus {
  if (current === 'revoked' && wanted !== 'revoked') throw new PipelineError(ErrorCodes.STATE_CONFLICT, 'status: a revoked agreement cannot be reactivated or suspended');
  return wanted;
}

/** Whether files may leave under the agreement now. */
export function mayShare(a: Agreement, now: Date): boolean {
  const t = now.toISOString();
  return a.status === 'active' && a.validFrom <= t && t < a.validUntil;
}
