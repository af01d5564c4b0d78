/**
 * The data-sharing use cases: agreements (create, read, suspend, revoke), exports as jobs
 * (start, one instance per queue message, the manifest last, then the event) and the record
 * of every file that left.
 *
 * A partner's copy is made from the SOURCE file, not from the research copy, by the same
 * preparation as the research copy (prepareForResearch: the gate, the burned-in policy, the
 * profile machinery), with the agreement's profile and key. The restricted index maps a
 * research instance back to its source and version. So a partner's UIDs and date shifts are
 * the agreement's own, reproducible from its key, and not linkable to the research catalog's.
 */
import { randomBytes } from 'node:crypto';

import type { IndexStore, Versioned } from '../catalog/catalogStore';
import type { ResearchCatalogReader } from '../catalog/researchCatalog';
import { ByteReader } from '../dicom/byteReader';
import type { HeaderLimits } from '../dicom/limits';
import { ErrorCodes, isPipelineError, isTransient, PipelineError } from '../errors';
import type { ExportEventPublisher } from '../events/publisher';
import type { BurnedInPolicy } from '../ingest/burnedIn';
import { prepareForResearch } from '../ingest/deidentifyInstance';
import { researchBlobName } from '../ingest/ingestSourceFile';
import type { SourceStore } from '../storage/stores';
import {
  type Agreement,
  type AgreementChange,
  agreementProfile,
  mayShare,
  nextStatus,
  parseAgreementChange,
  parseAgreementRequest,
} from './agreement';
import type { SharingCache } from './cache';
import { type CohortInstance, resolveCohort } from './cohort';
import type { DestinationProvider } from './destination';
import { agreementKey, agreementKeyId } from './keys';
import { manifestCsv, manifestJson, manifestNames, withdrawalCsv, withdrawalJson, withdrawalNames } from './manifest';
import type { AgreementStore, ExportCounts, ExportItem, ExportJob, ExportStore, SharingAuditStore, WithdrawnItem } from './stores';

/** One queue message: one research instance of one export (research UIDs only, never a source). */
export interface ExportMessage extends CohortInstance {
  exportId: string;
  agreementId: string;
}

export interface ExportQueue {
  /** Enqueues the messages (in any order). Throws SERVICE_* on faults; a retry may enqueue some twice, which the worker absorbs. */
  send(messages: ExportMessage[]): Promise<void>;
}

export interface SharingDeps {
  agreements: AgreementStore;
  exports: ExportStore;
  audit: SharingAuditStore;
  destinations: DestinationProvider;
  catalog: ResearchCatalogReader;
  index: Pick<IndexStore, 'findByResearchInstance'>;
  source: SourceStore;
  queue: ExportQueue;
  publisher: ExportEventPublisher;
  masterKey: Buffer;
  masterKeyId: string;
  /** A SAS never lives longer than this, whatever the agreement's term. */
  sasMaxHours: number;
  /** Containers of ours that no agreement may name (landing, research, quarantine). */
  reservedContainers: string[];
  limits: Partial<HeaderLimits> & { maxHeaderBytes: number };
  burnedIn: BurnedInPolicy;
  now?: () => Date;
  /** The worker's cache of jobs and agreements (cache.ts); none: every message reads both. */
  cache?: SharingCache;
}

/** A live part closes this long after its day (UTC) ends: the feed may still be adding the day's last instances. */
export const LIVE_PART_GRACE_MS = 5 * 60_000;

const now = (deps: SharingDeps) => (deps.now ?? (() => new Date()))();

function notFound(what: string): PipelineError {
  return new PipelineError(ErrorCodes.NOT_FOUND, `${what} not found`);
}

/** The agreement as the API shows it. */
export type AgreementView = Agreement;

/** `POST /api/agreements`. Throws REQUEST_INVALID naming the bad field, STATE_CONFLICT when another live agreement holds the container. */
export async function createAgreement(deps: SharingDeps, body: unknown, callerId: string): Promise<Agreement> {
  const request = parseAgreementRequest(body);
  const d = request.destination;
  if (d.kind === 'sas' && deps.reservedContainers.includes(d.container)) {
    throw new PipelineError(ErrorCodes.REQUEST_INVALID, 'destination.container: a container of the pipeline itself cannot be shared');
  }
  // One stored access policy per container: a second agreement on it would replace the first's grant.
  if (d.kind === 'sas' && (await deps.agreements.holdingContainer(d.container)).length > 0) {
    throw new PipelineError(ErrorCodes.STATE_CONFLICT, 'destination.container: held by another agreement that is not revoked');
  }
  const at = now(deps).toISOString();
  const id = `agr-${randomBytes(8).toString('hex')}`;
  let agreement: Agreement = {
    id,
    ...request,
    status: 'active',
    keyId: agreementKeyId(deps.masterKeyId, id),
    createdAt: at,
    createdBy: callerId,
    updatedAt: at,
    history: [{ status: 'active', at, by: callerId }],
  };
  if (d.kind === 'sas') {
    const until = Math.min(Date.parse(request.validUntil), now(deps).getTime() + deps.sasMaxHours * 3600_000);
    agreement = { ...agreement, sas: await deps.destinations.grant(agreement, new Date(until)) };
  }
  await deps.agreements.create(agreement);
  return agreement;
}

export async function getAgreement(deps: Pick<SharingDeps, 'agreements'>, id: string): Promise<Agreement> {
  const found = await deps.agreements.get(id);
  if (!found) throw notFound('agreement');
  return found.doc;
}

/**
 * `PATCH /api/agreements/{id}`: suspend, reactivate or revoke. Revoking deletes the SAS
 * destination's stored access policy (every SAS under it stops working), stops the feed and
 * records in the agreement what had been shared by then. Throws STATE_CONFLICT out of revoked.
 */
export async function changeAgreement(deps: SharingDeps, id: string, body: unknown, callerId: string): Promise<Agreement> {
  const change: AgreementChange = parseAgreementChange(body);
  for (;;) {
    const found = await deps.agreements.get(id);
    if (!found) throw notFound('agreement');
    const a = found.doc;
    const status = nextStatus(a.status, change.status);
    if (status === a.status) return a;
    const at = now(deps).toISOString();
    let next: Agreement = {
      ...a,
      status,
      updatedAt: at,
      history: [...a.history, { status, at, by: callerId, ...(change.reason ? { reason: change.reason } : {}) }],
    };
    if (status === 'revoked') {
      await deps.destinations.revokeGrant(a);
      const shared = (await deps.audit.byPartner(a.partnerId)).filter((r) => r.agreementId === a.id && r.action === 'shared');
      const { sas, ...rest } = next;
      next = {
        ...rest,
        ...(sas ? { sas: { ...sas, url: '', expiresOn: at } } : {}),
        sharedAtRevocation: { files: shared.length, bytes: shared.reduce((n, r) => n + r.size, 0) },
      };
    }
    try {
      await deps.agreements.replace(next, found.etag);
      deps.cache?.forgetAgreement(id);
      return next;
    } catch (e) {
      if (!isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) throw e;
    }
  }
}

/** An export's status as `GET /api/exports/{id}` gives it. */
export interface ExportStatus {
  exportId: string;
  agreementId: string;
  partnerId: string;
  status: 'running' | 'completed' | 'failed';
  /** Why an export ended `failed` (its enqueueing failed part way). */
  error?: { code: string; message: string };
  total: number;
  done: number;
  failed: number;
  left: number;
  bytes: number;
  startedAt: string;
  finishedAt?: string;
  manifest?: { json: string; csv: string };
}

function statusOf(job: ExportJob, counts: ExportCounts): ExportStatus {
  const total = job.live ? counts.wanted : job.total;
  return {
    exportId: job.exportId,
    agreementId: job.agreementId,
    partnerId: job.partnerId,
    status: job.status,
    total,
    done: counts.done,
    failed: counts.failed,
    left: Math.max(0, total - counts.done - counts.failed),
    bytes: counts.bytes,
    startedAt: job.startedAt,
    ...(job.finishedAt ? { finishedAt: job.finishedAt } : {}),
    ...(job.manifest ? { manifest: job.manifest } : {}),
    ...(job.error ? { error: job.error } : {}),
  };
}

export async function getExport(deps: Pick<SharingDeps, 'exports'>, exportId: string): Promise<ExportStatus> {
  const found = await deps.exports.getJob(exportId);
  if (!found) throw notFound('export');
  return statusOf(found.doc, await deps.exports.counts(exportId, { live: found.doc.live === true }));
}

/** Messages enqueued at once. */
const SEND_BATCH = 256;

/**
 * `POST /api/agreements/{id}/exports`: resolves the cohort, creates the job and enqueues one
 * message per instance. Throws NOT_FOUND, STATE_CONFLICT for an agreement that is not active
 * and in its term. When the queue fails part way (after the SDK's own retries), the instances
 * not enqueued are recorded failed with the queue's code, the job ends `failed` once the
 * messages that did go are done (so it never stays `running`), and the error is thrown (503
 * for SERVICE_*): a retried request starts a new export, whose copies of files already written
 * are the same files (named by partner UIDs, written once).
 */
export async function startExport(deps: SharingDeps, agreementId: string, requestedBy: string, options: { instances?: CohortInstance[] } = {}): Promise<ExportStatus> {
  const a = await getAgreement(deps, agreementId);
  if (!mayShare(a, now(deps))) throw new PipelineError(ErrorCodes.STATE_CONFLICT, `status: the agreement is ${a.status === 'active' ? 'outside its term' : a.status}; nothing can be exported`);
  const instances: CohortInstance[] = options.instances ?? [];
  if (!options.instances) for await (const i of resolveCohort(deps.catalog, a.cohort)) instances.push(i);
  const exportId = `exp-${randomBytes(8).toString('hex')}`;
  const profile = agreementProfile(a.profile);
  const job: ExportJob = {
    id: exportId,
    exportId,
    type: 'job',
    agreementId: a.id,
    partnerId: a.partnerId,
    total: instances.length,
    status: 'running',
    requestedBy,
    profile: `${profile.name} ${profile.version}`,
    keyId: a.keyId,
    startedAt: now(deps).toISOString(),
  };
  await deps.exports.createJob(job);
  let sent = 0;
  try {
    for (; sent < instances.length; sent += SEND_BATCH) {
      await deps.queue.send(instances.slice(sent, sent + SEND_BATCH).map((inst) => ({ exportId, agreementId: a.id, ...inst })));
    }
  } catch (e) {
    await abandonEnqueue(deps, exportId, instances.slice(sent), e);
    const code = isPipelineError(e) ? e.code : ErrorCodes.SERVICE_UNAVAILABLE;
    throw new PipelineError(code, `export ${exportId}: enqueueing failed after ${sent} of ${instances.length} instances; the rest are recorded failed and the export ends failed`, { cause: e });
  }
  if (instances.length === 0) await finishExport(deps, exportId);
  return getExport(deps, exportId);
}

/** Instances recorded at once when an enqueue is abandoned. */
const ABANDON_WIDTH = 16;

/**
 * An enqueue that failed part way: the job gets its error first (whoever finishes the export
 * then ends it `failed`), then every instance from the failed batch on is recorded failed
 * (some of that batch may have been sent: their worker then finds the item and does nothing),
 * then the workers' gate is advanced by as many, and the export is finished if its other
 * messages are done already. Idempotent.
 */
async function abandonEnqueue(deps: SharingDeps, exportId: string, unsent: CohortInstance[], cause: unknown): Promise<void> {
  const code = isPipelineError(cause) ? cause.code : ErrorCodes.SERVICE_UNAVAILABLE;
  const error = { code, message: `the export queue failed: ${unsent.length} instance(s) were not enqueued` };
  for (;;) {
    const found = await deps.exports.getJob(exportId);
    if (!found) throw notFound('export');
    try {
      await deps.exports.replaceJob({ ...found.doc, error }, found.etag);
      break;
    } catch (e) {
      // A worker counted meanwhile (the gate): read again.
      if (!isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) throw e;
    }
  }
  const at = now(deps).toISOString();
  let next = 0;
  let created = 0;
  await Promise.all(Array.from({ length: Math.min(ABANDON_WIDTH, unsent.length) }, async () => {
    while (next < unsent.length) {
      const inst = unsent[next++] as CohortInstance;
      if ((await deps.exports.recordItem({ id: `item:${inst.sopInstanceUid}`, exportId, type: 'item', status: 'failed', at, errorCode: code })) === 'created') created += 1;
    }
  }));
  if (created > 0) await deps.exports.countRecorded(exportId, created);
  await finishExport(deps, exportId);
}

export interface Delivery {
  /** How many times the queue has handed this message out, this time included. */
  dequeueCount: number;
  /** The host's maxDequeueCount: at the last delivery a transient failure is recorded as failed, so that the export still ends. */
  maxDequeueCount: number;
}

/** What the worker did with one message. */
export type ExportOutcome = 'written' | 'already-done' | 'failed';

/**
 * The queue-triggered worker: writes one instance's partner copy, records it (audit, then the
 * item), then finishes the export when it was the last. Idempotent per message: the file is
 * named by partner UIDs and committed only if absent; the audit record and the item are created
 * once. Throws transient errors (the message is delivered again) except at the last delivery.
 */
export async function exportInstance(deps: SharingDeps, message: ExportMessage, delivery: Delivery): Promise<ExportOutcome> {
  const { exportId } = message;
  const [existing, job, agreement] = await Promise.all([
    deps.exports.getItem(exportId, message.sopInstanceUid),
    jobOf(deps, exportId),
    agreementOf(deps, message.agreementId),
  ]);
  if (!job || !agreement) throw new PipelineError(ErrorCodes.NOT_FOUND, 'export message: its export or agreement does not exist');
  if (existing) {
    await settle(deps, job.doc);
    return 'already-done';
  }
  const fail = async (code: string) => {
    await deps.exports.recordItem({ id: `item:${message.sopInstanceUid}`, exportId, type: 'item', status: 'failed', at: now(deps).toISOString(), errorCode: code });
    await settle(deps, job.doc);
    return 'failed' as const;
  };
  if (!mayShare(agreement.doc, now(deps))) return fail(ErrorCodes.STATE_CONFLICT);
  try {
    return await writePartnerCopy(deps, agreement.doc, job.doc, message);
  } catch (e) {
    if (isTransient(e) && delivery.dequeueCount < delivery.maxDequeueCount) throw e;
    if (!isPipelineError(e)) throw e;
    return fail(e.code);
  }
}

async function writePartnerCopy(deps: SharingDeps, a: Agreement, job: ExportJob, message: ExportMessage): Promise<ExportOutcome> {
  const sources = (await deps.index.findByResearchInstance(message.sopInstanceUid)).filter(
    (d) => d.status === 'cataloged' && d.research?.sopInstanceUid === message.sopInstanceUid && d.eTag,
  );
  // Several sources of one research instance: the one the research copy comes from (highest rank).
  const source = sources.sort((x, y) => ((x.sourceRank ?? '') < (y.sourceRank ?? '') ? 1 : -1))[0];
  if (!source?.eTag) throw new PipelineError(ErrorCodes.SOURCE_NOT_FOUND, 'export: no cataloged source for the research instance');
  const data = await deps.source.readRange(source.container, source.blobName, source.eTag, 0, undefined);
  const key = agreementKey(deps.masterKey, a.id);
  const preparation = await prepareForResearch(new ByteReader(data), {
    deid: { profile: agreementProfile(a.profile), key, keyId: a.keyId },
    maxHeaderBytes: deps.limits.maxHeaderBytes,
    limits: deps.limits,
    ...(source.size !== undefined ? { totalSize: source.size } : {}),
    burnedIn: deps.burnedIn,
  });
  if (!preparation.ok) throw preparation.error;
  const { prepared } = preparation;
  const blob = researchBlobName(prepared.research);
  const destination = deps.destinations.open(a);
  const written = await destination.writeOnce(blob, prepared.output());
  const at = now(deps).toISOString();
  const file = { blob, ...prepared.research, sopClassUid: prepared.sopClassUid, size: written.size, sha256: written.sha256 };
  // The record of the file that left comes before the item: an item never exists without it.
  await deps.audit.append({
    id: `${a.id}:${prepared.research.sopInstanceUid}`,
    partnerId: a.partnerId,
    agreementId: a.id,
    exportId: job.exportId,
    action: 'shared',
    time: at,
    requestedBy: job.requestedBy,
    destination: destination.label,
    ...file,
    keyId: a.keyId,
  });
  const item: ExportItem = { id: `item:${message.sopInstanceUid}`, exportId: job.exportId, type: 'item', status: 'done', at, file };
  const created = await deps.exports.recordItem(item);
  // The source deleted while this copy was written: the deletion's withdrawal may have run before
  // the item existed and missed it. The blob goes before the withdrawal is announced, so either
  // this finds it gone or the withdrawal, later, finds the item.
  if (!(await deps.source.getProperties(source.container, source.blobName))) await withdrawSharedInstance(deps, message);
  await settle(deps, job);
  return created === 'created' && written.created ? 'written' : 'already-done';
}

/** The job, through the worker's cache when there is one. */
function jobOf(deps: SharingDeps, exportId: string): Promise<Versioned<ExportJob> | undefined> {
  return deps.cache ? deps.cache.job(exportId, () => deps.exports.getJob(exportId)) : deps.exports.getJob(exportId);
}

/** The agreement, through the worker's cache when there is one (kept a few seconds: cache.ts). */
function agreementOf(deps: SharingDeps, id: string): Promise<Versioned<Agreement> | undefined> {
  return deps.cache ? deps.cache.agreement(id, () => deps.agreements.get(id)) : deps.agreements.get(id);
}

/**
 * After a message's item is recorded (or found): a once-export advances the gate and, only
 * when the gate has reached the total, counts the items and finishes the export if they are
 * all there. The gate is advanced on every delivery that gets here, so it is never behind the
 * items (a crash between the item and the gate is followed by a redelivery that counts), and
 * the worker that records the last item always sees the gate at the total. A live part
 * rewrites its manifest, and closes once its day is over.
 */
async function settle(deps: SharingDeps, job: ExportJob): Promise<void> {
  if (job.live) {
    await finishExport(deps, job.exportId);
    return;
  }
  if ((await deps.exports.countRecorded(job.exportId)) >= job.total) await finishExport(deps, job.exportId);
}

/**
 * Ends an export once every instance is done or failed: the manifest (JSON and CSV) is written
 * last, then the event is published (id = export id), then the job is marked completed. Safe to
 * run by several workers at once and again after a crash: the manifest is the same content,
 * the event the same id.
 */
export async function finishExport(deps: SharingDeps, exportId: string): Promise<void> {
  const found = await deps.exports.getJob(exportId);
  if (!found || found.doc.status !== 'running') return;
  const job = found.doc;
  if (job.live) {
    await refreshLiveManifest(deps, job);
    if (livePartDayOver(job, now(deps))) await closeLivePart(deps, exportId);
    return;
  }
  if ((await deps.exports.settled(exportId)) < job.total) return;
  await writeManifestAndEnd(deps, job, await deps.exports.counts(exportId));
}

/**
 * The end of an export or of a live part: the manifest (JSON and CSV, blob-name order), then
 * VNA.Export.Completed (id = export id, so a second finisher publishes the same event), then
 * the job marked `completed` (or `failed`, when its enqueueing failed). Read again on a
 * conflict: the gate's increments change the job's etag.
 */
async function writeManifestAndEnd(deps: SharingDeps, job: ExportJob, counts: ExportCounts): Promise<void> {
  const { exportId } = job;
  const agreement = await getAgreement(deps, job.agreementId);
  const items = await deps.exports.doneItems(exportId);
  const names = manifestNames(exportId);
  const destination = deps.destinations.open(agreement);
  const header = { exportId, agreementId: agreement.id, partnerId: agreement.partnerId, profile: job.profile, keyId: job.keyId, counts };
  await destination.putText(names.csv, manifestCsv(items), 'text/csv; charset=utf-8');
  await destination.putText(names.json, manifestJson(header, items), 'application/json');
  await deps.publisher.exportCompleted({ ...header, done: counts.done, failed: counts.failed, bytes: counts.bytes, manifest: names }, exportId);
  for (;;) {
    const found = await deps.exports.getJob(exportId);
    // Gone, or ended by another worker meanwhile.
    if (!found || found.doc.status !== 'running') return;
    try {
      await deps.exports.replaceJob({ ...found.doc, status: found.doc.error ? 'failed' : 'completed', finishedAt: now(deps).toISOString(), manifest: names }, found.etag);
      return;
    } catch (e) {
      if (!isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) throw e;
    }
  }
}

/** The id of a live agreement's part for the day (UTC) of `at`: `live-<agreement hex>-<YYYYMMDD>`. */
export function livePartId(agreementId: string, at: Date): string {
  return `live-${agreementId.replace(/^agr-/, '')}-${at.toISOString().slice(0, 10).replace(/-/g, '')}`;
}

/** Whether a live part's day (UTC, from its id) ended more than LIVE_PART_GRACE_MS before `at`. */
export function livePartDayOver(job: Pick<ExportJob, 'exportId'>, at: Date): boolean {
  const day = /-(\d{4})(\d{2})(\d{2})$/.exec(job.exportId);
  if (!day) return false;
  const end = Date.UTC(Number(day[1]), Number(day[2]) - 1, Number(day[3]) + 1);
  return at.getTime() >= end + LIVE_PART_GRACE_MS;
}

/**
 * Closes a live part whose day is over (plus the grace) once every instance it wanted is done
 * or failed: its final manifest, then VNA.Export.Completed (id = the part's id, with the
 * manifest's blob names and the counts), then the part marked `completed`. Resolves whether it
 * closed. Idempotent: a part already closed, or not closable yet, is left as it is.
 */
export async function closeLivePart(deps: SharingDeps, exportId: string): Promise<boolean> {
  const found = await deps.exports.getJob(exportId);
  if (!found || found.doc.status !== 'running' || !found.doc.live || !livePartDayOver(found.doc, now(deps))) return false;
  const counts = await deps.exports.counts(exportId, { live: true });
  if (counts.done + counts.failed < counts.wanted) return false;
  await writeManifestAndEnd(deps, found.doc, counts);
  return true;
}

/**
 * Closes every open live part that can be (of one agreement, or all): run by the timer
 * `closeLiveParts`, and by the feed when it opens an agreement's part of a new day. The last
 * worker of a part whose day is over closes it too. Resolves with the parts closed.
 */
export async function closeLiveParts(deps: SharingDeps, agreementId?: string): Promise<string[]> {
  const closed: string[] = [];
  for (const part of await deps.exports.openLiveParts(agreementId)) {
    if (livePartDayOver(part, now(deps)) && (await closeLivePart(deps, part.exportId))) closed.push(part.exportId);
  }
  return closed;
}

/**
 * A live part's manifest, rewritten as the part grows (by every worker that records an item).
 * Read again until the counts hold still, so that the last writer writes the last state.
 */
async function refreshLiveManifest(deps: SharingDeps, job: ExportJob): Promise<void> {
  const agreement = await getAgreement(deps, job.agreementId);
  const destination = deps.destinations.open(agreement);
  const names = manifestNames(job.exportId);
  for (let round = 0; round < 3; round++) {
    const counts = await deps.exports.counts(job.exportId, { live: true });
    const items = await deps.exports.doneItems(job.exportId);
    const header = { exportId: job.exportId, agreementId: agreement.id, partnerId: agreement.partnerId, profile: job.profile, keyId: job.keyId, counts };
    await destination.putText(names.csv, manifestCsv(items), 'text/csv; charset=utf-8');
    await destination.putText(names.json, manifestJson(header, items), 'application/json');
    const after = await deps.exports.counts(job.exportId, { live: true });
    if (after.done === counts.done && after.failed === counts.failed) return;
  }
}

/** Whether a research instance belongs to a cohort: the cohort's own query, confined to the instance's study. */
async function inCohort(deps: Pick<SharingDeps, 'catalog'>, cohort: Agreement['cohort'], instance: CohortInstance): Promise<boolean> {
  if (cohort.studies && !cohort.studies.includes(instance.studyInstanceUid)) return false;
  for await (const i of resolveCohort(deps.catalog, { ...cohort, studies: [instance.studyInstanceUid] })) {
    if (i.sopInstanceUid === instance.sopInstanceUid) return true;
  }
  return false;
}

/**
 * A newly cataloged research instance (VNA.Catalog.InstanceCataloged), fed to every active
 * `live` agreement in its term whose cohort it matches: recorded as wanted by the day's part,
 * then one message to the export queue. Idempotent: a redelivered event finds the instance
 * wanted already and sends its message again, which the worker absorbs. Resolves with the
 * agreements fed.
 */
export async function feedLiveAgreements(deps: SharingDeps, instance: CohortInstance): Promise<string[]> {
  const at = now(deps);
  const fed: string[] = [];
  for (const a of await deps.agreements.listLive()) {
    if (!mayShare(a, at) || !(await inCohort(deps, a.cohort, instance))) continue;
    const exportId = livePartId(a.id, at);
    const profile = agreementProfile(a.profile);
    let opened = false;
    try {
      await deps.exports.createJob({
        id: exportId, exportId, type: 'job', agreementId: a.id, partnerId: a.partnerId, total: 0, status: 'running',
        requestedBy: 'live-feed', profile: `${profile.name} ${profile.version}`, keyId: a.keyId, startedAt: at.toISOString(), live: true,
      });
      opened = true;
    } catch (e) {
      if (!isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) throw e;
    }
    // A new day's part: the agreement's earlier parts may be closable now (the timer closes the others).
    if (opened) await closeLiveParts(deps, a.id);
    await deps.exports.want({ id: `want:${instance.sopInstanceUid}`, exportId, type: 'want' });
    await deps.queue.send([{ exportId, agreementId: a.id, ...instance }]);
    fed.push(a.id);
  }
  return fed;
}

/** What became of a withdrawn research instance's partner copies. */
export interface WithdrawalResult {
  /** Copies removed from containers of ours (SAS destinations). */
  deleted: number;
  /** Copies in partner accounts whose partner was sent VNA.Export.InstanceWithdrawn. */
  notified: number;
}

/** Who the withdrawal's audit record names as having asked: the deletion of the source, not a caller. */
export const WITHDRAWN_BY = 'source-deleted';

/**
 * A research instance withdrawn because its source was deleted (VNA.Catalog.InstanceWithdrawn):
 * every partner copy of it is withdrawn, whatever the agreement's status now (a revoked or
 * suspended agreement's copies were shared under it, and the duty to delete outlasts it). In a
 * container of ours (SAS) the copy is deleted; in a partner's account (managed identity) the
 * partner is sent VNA.Export.InstanceWithdrawn with its own UIDs. Then, per export, a withdrawal
 * item and the withdrawal list next to the manifest; per agreement, one `withdrawn` audit record.
 * Idempotent and level-triggered: a redelivered event finds the same items, deletes nothing that
 * is left, publishes the same event ids and appends no second record. Every copy is tried; the
 * first failure is then rethrown, so that Event Grid delivers the event again.
 */
export async function withdrawSharedInstance(deps: SharingDeps, instance: CohortInstance): Promise<WithdrawalResult> {
  const items = await deps.exports.itemsOfInstance(instance.sopInstanceUid);
  const result: WithdrawalResult = { deleted: 0, notified: 0 };
  const jobs = new Map<string, ExportJob>();
  const agreements = new Map<string, Agreement>();
  let first: unknown;
  for (const item of items) {
    try {
      const file = item.file;
      if (item.status !== 'done' || !file) continue;
      const job = jobs.get(item.exportId) ?? (await deps.exports.getJob(item.exportId))?.doc;
      if (!job) throw new PipelineError(ErrorCodes.NOT_FOUND, 'withdrawal: an exported instance has no export');
      jobs.set(job.exportId, job);
      const a = agreements.get(job.agreementId) ?? (await getAgreement(deps, job.agreementId));
      agreements.set(a.id, a);
      const destination = deps.destinations.open(a);
      const controlled = a.destination.kind === 'sas';
      if (controlled) {
        await destination.delete(file.blob);
      } else {
        await deps.publisher.exportInstanceWithdrawn(
          { agreementId: a.id, partnerId: a.partnerId, destination: destination.label, blob: file.blob, studyInstanceUid: file.studyInstanceUid, seriesInstanceUid: file.seriesInstanceUid, sopInstanceUid: file.sopInstanceUid, keyId: a.keyId },
          `withdrawn:${a.id}:${file.sopInstanceUid}`,
        );
      }
      const at = now(deps).toISOString();
      const withdrawal: WithdrawnItem = { id: `withdrawn:${instance.sopInstanceUid}`, exportId: job.exportId, type: 'withdrawal', at, outcome: controlled ? 'deleted' : 'notified', file };
      await deps.exports.recordWithdrawal(withdrawal);
      await deps.audit.append({
        id: `${a.id}:${file.sopInstanceUid}:withdrawn`,
        partnerId: a.partnerId,
        agreementId: a.id,
        exportId: job.exportId,
        action: 'withdrawn',
        time: at,
        requestedBy: WITHDRAWN_BY,
        destination: destination.label,
        ...file,
        keyId: a.keyId,
      });
      const names = withdrawalNames(job.exportId);
      const withdrawn = await deps.exports.withdrawals(job.exportId);
      const header = { exportId: job.exportId, agreementId: a.id, partnerId: a.partnerId };
      await destination.putText(names.csv, withdrawalCsv(withdrawn), 'text/csv; charset=utf-8');
      await destination.putText(names.json, withdrawalJson(header, withdrawn), 'application/json');
      result[controlled ? 'deleted' : 'notified'] += 1;
    } catch (e) {
      first ??= e;
    }
  }
  if (first !== undefined) throw first;
  return result;
}
