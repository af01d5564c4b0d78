/**
 * The ingestion use case: one source blob becomes a cataloged, de-identified research
 * instance, or a recorded failure.
 *
 * Level-triggered: whatever the event said, the blob's current state decides. A created
 * event for a blob that is gone is handled as a deletion; a deleted event for a blob that
 * exists again as a creation; an event for a version already recorded changes nothing. That
 * makes duplicate, reordered and concurrent deliveries end in the state exactly-once
 * delivery would reach.
 */
import { createHash, createHmac } from 'node:crypto';

import type { IndexStore, ResearchCatalogWriter, Versioned } from '../catalog/catalogStore';
import type { IngestionDocument, InstanceDocument } from '../catalog/documents';
import { ByteReader } from '../dicom/byteReader';
import { sha256For } from '../dicom/chunkHasher';
import type { Profile } from '../dicom/deid/profile';
import { catalogMetadata } from '../dicom/metadata';
import { ErrorCodes, isPipelineError, PipelineError } from '../errors';
import type { IngestRequest, SourceLocation } from '../events/ingestEvents';
import type { EventPublisher } from '../events/publisher';
import { OpenedSource, QuarantineStore, ResearchStore, SourceProperties, SourceStore, stagedWriteOf } from '../storage/blobStores';
import type { Telemetry } from '../telemetry/telemetry';
import type { BurnedInPolicy } from './burnedIn';
import { auditRecord, prepareDeidentifiedInstance } from './deidentifyInstance';

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface IngestDeps {
  source: SourceStore;
  research: ResearchStore;
  quarantine: QuarantineStore;
  index: IndexStore;
  catalog: ResearchCatalogWriter;
  publisher: EventPublisher;
  telemetry: Telemetry;
  log: Logger;
  deid: { profile: Profile; key: Buffer; keyId: string };
  limits: { maxHeaderBytes: number };
  burnedIn: BurnedInPolicy;
  now?: () => Date;
  /**
   * Called once the file's bytes are no longer held (research copy written, source read to
   * the end): the catalog updates that follow wait on the service, not on memory, so the
   * concurrency slot (see Limiter) can go to the next file.
   */
  fileDone?: () => void;
}

export type IngestStatus = 'cataloged' | 'superseded' | 'failed' | 'quarantined' | 'deleted' | 'unchanged';

export interface IngestOutcome {
  status: IngestStatus;
  errorCode?: string;
  research?: { studyInstanceUid: string; seriesInstanceUid: string; sopInstanceUid: string };
}

/** Bytes of the first ranged read of a large file: enough for almost every header. */
const HEADER_RANGE = 64 * 1024;
/** Files up to this size are read in one request (a second round trip would cost more than it saves). */
const SINGLE_READ_MAX = 4 * 1024 * 1024;
/** Reads of one source version that found it changed, before giving up to Event Grid's retry. */
const MAX_SOURCE_ATTEMPTS = 3;
/** Optimistic-concurrency attempts on one document or blob. */
const MAX_CAS_ATTEMPTS = 20;

/**
 * Runs one read-decide-write step until it is not outrun by another writer: a conditional
 * write that fails with CATALOG_CONFLICT is decided again on fresh reads. Gives up (still
 * CATALOG_CONFLICT, so Event Grid retries later) after MAX_CAS_ATTEMPTS.
 */
async function untilNotOutrun<T>(what: string, step: (attempt: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; attempt <= MAX_CAS_ATTEMPTS; attempt++) {
    try {
      return await step(attempt);
    } catch (e) {
      if (!isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) throw e;
    }
  }
  throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, `${what} kept changing while it was written`);
}
const MAX_EVENT_IDS = 10;

export function sourceId(canonicalUrl: string): string {
  return createHash('sha256').update(canonicalUrl).digest('hex');
}

function keyed(key: Buffer, purpose: string, value: string): string {
  return createHmac('sha256', key).update(`${purpose}\0${value}`).digest('hex');
}

/**
 * Orders files that carry the same SOP instance. Rule: the most recently written source
 * (blob Last-Modified) wins, ties broken by a keyed hash of the URL, so every instance of the
 * function agrees whatever order the events come in.
 */
export function sourceRank(key: Buffer, canonicalUrl: string, lastModified: Date): string {
  return `${lastModified.toISOString()}|${keyed(key, 'rank', canonicalUrl).slice(0, 32)}`;
}

export function researchBlobName(r: { studyInstanceUid: string; seriesInstanceUid: string; sopInstanceUid: string }): string {
  return `${r.studyInstanceUid}/${r.seriesInstanceUid}/${r.sopInstanceUid}.dcm`;
}

/**
 * The source's bytes, all of one version (ETag): the first bytes from the request that found
 * the version when there was one, else a ranged read of the header; then one stream for the rest.
 */
async function* sourceChunks(deps: IngestDeps, loc: SourceLocation, props: SourceProperties, opened: OpenedSource | undefined): AsyncGenerator<Uint8Array> {
  let offset = 0;
  if (opened) {
    // Counted as they arrive: the rest starts where these bytes really ended.
    for await (const chunk of opened.head) {
      offset += chunk.byteLength;
      yield chunk;
    }
  } else {
    const first = props.size <= SINGLE_READ_MAX ? props.size : HEADER_RANGE;
    if (first > 0) yield* await deps.source.readRange(loc.container, loc.blobName, props.etag, 0, first);
    offset = first;
  }
  if (props.size > offset) yield* await deps.source.readRange(loc.container, loc.blobName, props.etag, offset, undefined);
}

/**
 * Handles one request. Resolves with what happened; rejects only with a transient error
 * (a retry may fix it), so that Event Grid redelivers.
 */
export async function ingestSourceFile(deps: IngestDeps, request: IngestRequest, loc: SourceLocation, depth = 0): Promise<IngestOutcome> {
  const started = Date.now();
  const id = sourceId(loc.canonicalUrl);
  // One request finds the blob's current version and brings its first bytes (the whole file
  // when it is small); the index is read meanwhile.
  const [openResult, indexResult] = await Promise.allSettled([deps.source.open(loc.container, loc.blobName, SINGLE_READ_MAX), deps.index.get(id)]);
  if (openResult.status === 'rejected') throw openResult.reason;
  const opened = openResult.value;
  if (indexResult.status === 'rejected') {
    opened?.discard();
    throw indexResult.reason;
  }
  if (!opened) return handleGone(deps, request, loc, id, depth);
  const props = opened.props;
  const existing = indexResult.value;
  if (existing && existing.doc.eTag === props.etag && ['cataloged', 'failed', 'quarantined'].includes(existing.doc.status)) {
    opened.discard();
    deps.log.info(`event ${request.eventId}: source ${id.slice(0, 12)} version already ${existing.doc.status}; nothing to do`);
    return { status: 'unchanged' };
  }

  let outcome: IngestOutcome;
  let current = props;
  // The opened bytes serve the first attempt only; a retry reads the version it found.
  let head: OpenedSource | undefined = opened;
  for (let attempt = 1; ; attempt++) {
    try {
      outcome = await processVersion(deps, request, loc, id, current, existing, head);
      break;
    } catch (e) {
      head = undefined;
      if (isPipelineError(e, ErrorCodes.SOURCE_CHANGED) && attempt < MAX_SOURCE_ATTEMPTS) {
        const next = await deps.source.getProperties(loc.container, loc.blobName);
        if (!next) return handleGone(deps, request, loc, id, depth);
        current = next;
        continue;
      }
      if (isPipelineError(e, ErrorCodes.SOURCE_NOT_FOUND)) return handleGone(deps, request, loc, id, depth);
      if (isPipelineError(e) && e.transient) {
        deps.telemetry.trackFailure(e.code, 'ingest');
        throw e;
      }
      outcome = await recordFailure(deps, request, loc, id, current, existing, e);
      break;
    }
  }
  deps.telemetry.trackIngestion({ status: outcome.status, errorCode: outcome.errorCode, durationMs: Date.now() - started, bytes: current.size });
  return outcome;
}

async function processVersion(
  deps: IngestDeps,
  request: IngestRequest,
  loc: SourceLocation,
  id: string,
  props: SourceProperties,
  existing: Versioned<IngestionDocument> | undefined,
  opened: OpenedSource | undefined,
): Promise<IngestOutcome> {
  const now = deps.now ?? (() => new Date());
  const rank = sourceRank(deps.deid.key, loc.canonicalUrl, props.lastModified);
  // A large source is hashed on the hashing thread while this one parses and uploads.
  const reader = new ByteReader(sourceChunks(deps, loc, props, opened), { hasher: sha256For(props.size) });
  const { prepared, blobName, decision, sha256 } = await (async () => {
    try {
      const prepared = await prepareDeidentifiedInstance(reader, {
        deid: deps.deid,
        maxHeaderBytes: deps.limits.maxHeaderBytes,
        totalSize: props.size,
        burnedIn: deps.burnedIn,
      });
      const blobName = researchBlobName(prepared.research);
      const decision = await writeResearchCopy(deps, blobName, rank, prepared.output);
      // Whatever was not read (a superseded copy, bytes after the data set) still counts for the source hash.
      await reader.drain();
      const sha256 = (await reader.sha256()) ?? '';
      return { prepared, blobName, decision, sha256 };
    } finally {
      // A failed read releases its source response and the hash it started.
      await reader.close();
    }
  })();
  const { original, research, sopClassUid, outputTs, report, header, dataset: ds, enc } = prepared;
  deps.fileDone?.();

  const metadata = catalogMetadata(ds, enc.littleEndian);
  const instance: InstanceDocument = {
    id: `instance:${research.sopInstanceUid}`,
    type: 'instance',
    studyInstanceUid: research.studyInstanceUid,
    seriesInstanceUid: research.seriesInstanceUid,
    sopInstanceUid: research.sopInstanceUid,
    sopClassUid,
    modality: metadata.modality,
    transferSyntaxUid: outputTs,
    size: decision.size,
    researchBlob: blobName,
    sourceRank: rank,
    sourceKey: keyed(deps.deid.key, 'source', loc.canonicalUrl).slice(0, 32),
    deidentification: { profile: deps.deid.profile.name, profileVersion: deps.deid.profile.version, keyId: deps.deid.keyId },
    dicom: {
      ...metadata.instance,
      '00020010': { vr: 'UI', Value: [outputTs] },
    },
    updatedAt: now().toISOString(),
  };
  if (decision.kept) await putInstance(deps, instance);

  // A new version of this source may carry another instance than the last one did.
  const previous = existing?.doc;
  if (previous?.research && previous.research.blob !== blobName) {
    const sameInstance = previous.research.studyInstanceUid === research.studyInstanceUid && previous.research.sopInstanceUid === research.sopInstanceUid;
    // Same instance in another series: its document was just rewritten; only the old copy goes.
    if (sameInstance) {
      await deps.research.delete(previous.research.blob);
      await deps.catalog.refreshSummaries(previous.research.studyInstanceUid, previous.research.seriesInstanceUid);
    } else {
      await removeResearchInstance(deps, previous, loc.canonicalUrl);
    }
  }

  await deps.catalog.refreshSummaries(research.studyInstanceUid, research.seriesInstanceUid);

  await writeIndex(deps, id, loc, props, request, existing, {
    status: 'cataloged',
    sha256,
    sourceRank: rank,
    original,
    research: { ...research, blob: blobName },
    deidentification: { ...auditRecord(deps.deid, report, 'passed'), ...(prepared.pixelsCleaned ? { pixelsCleaned: prepared.pixelsCleaned } : {}) },
    transferSyntaxUid: header.transferSyntaxUid,
    modality: metadata.modality,
    catalogedAt: now().toISOString(),
  });

  if (decision.kept) {
    await deps.publisher.instanceCataloged(
      { ...research, sopClassUid, modality: metadata.modality, researchBlob: blobName, size: decision.size },
      keyed(deps.deid.key, 'event', `${loc.canonicalUrl}\0${props.etag}`).slice(0, 32),
    );
  }
  deps.log.info(`event ${request.eventId}: ${decision.kept ? 'cataloged' : 'superseded by another source of the same instance'} as ${research.sopInstanceUid}`);
  return { status: decision.kept ? 'cataloged' : 'superseded', research };
}

/**
 * Writes the research copy unless a higher-ranked source already holds it. The decision and
 * the commit are tied by the blob's ETag, so two writers of one instance cannot both win.
 * The first attempt creates the blob only if it does not exist: a new instance, the common
 * case, costs one request. When a copy exists, its rank decides and the staged data is
 * committed over it (or dropped) without reading the source again.
 */
async function writeResearchCopy(
  deps: IngestDeps,
  blobName: string,
  rank: string,
  output: () => AsyncGenerator<Uint8Array>,
): Promise<{ kept: boolean; size: number }> {
  let staged;
  try {
    // Read through whatever happens next: a broken file must fail whether or not another
    // source of its instance was ingested first.
    staged = await deps.research.write(blobName, output(), { rank, keyId: deps.deid.keyId, expected: undefined });
    return { kept: true, size: staged.size };
  } catch (e) {
    staged = stagedWriteOf(e);
    if (!staged) throw e;
  }
  const pending = staged;
  return untilNotOutrun('research copy', async () => {
    const current = await deps.research.getVersion(blobName);
    if (current && current.rank > rank) return { kept: false, size: 0 };
    await pending.recommit(current);
    return { kept: true, size: pending.size };
  });
}

/**
 * Creates or replaces the instance document unless a higher-ranked source holds it. The first
 * attempt only creates (a new instance costs one request); an existing document is read and
 * its rank decides.
 */
async function putInstance(deps: IngestDeps, doc: InstanceDocument): Promise<void> {
  await untilNotOutrun('instance document', async (attempt) => {
    if (attempt === 1) return deps.catalog.putInstance(doc, undefined);
    const existing = await deps.catalog.getInstance(doc.studyInstanceUid, doc.sopInstanceUid);
    // A higher rank is another source's; the same rank is this source version, whose output is the same.
    if (existing && existing.doc.sourceRank >= doc.sourceRank) return;
    await deps.catalog.putInstance(doc, existing?.etag);
  });
}

type IndexFields = Partial<Omit<IngestionDocument, 'id' | 'sourceUrl' | 'container' | 'blobName' | 'eventIds' | 'attempts' | 'firstSeenAt' | 'updatedAt'>> &
  Pick<IngestionDocument, 'status'>;

/**
 * Writes the index record for a source version. A record of a newer version (later
 * Last-Modified) is never overwritten by an older one that finished later.
 */
async function writeIndex(
  deps: IngestDeps,
  id: string,
  loc: SourceLocation,
  props: SourceProperties | undefined,
  request: IngestRequest,
  known: Versioned<IngestionDocument> | undefined,
  fields: IndexFields,
): Promise<void> {
  const now = (deps.now ?? (() => new Date()))().toISOString();
  await untilNotOutrun('ingestion record', async (attempt) => {
    // The record read at the start serves the first attempt; a conflict means it moved on.
    const existing = attempt === 1 ? known : await deps.index.get(id);
    const prev = existing?.doc;
    if (prev && props && prev.lastModified && prev.lastModified > props.lastModified.toISOString() && prev.status !== 'deleted') return;
    const doc: IngestionDocument = {
      id,
      sourceUrl: loc.canonicalUrl,
      container: loc.container,
      blobName: loc.blobName,
      eventIds: [...(prev?.eventIds ?? []).filter((e) => e !== request.eventId), request.eventId].slice(-MAX_EVENT_IDS),
      attempts: (prev?.attempts ?? 0) + 1,
      firstSeenAt: prev?.firstSeenAt ?? now,
      updatedAt: now,
      ...(props ? { eTag: props.etag, size: props.size, lastModified: props.lastModified.toISOString() } : {
        eTag: prev?.eTag, size: prev?.size, lastModified: prev?.lastModified,
      }),
      ...fields,
    };
    // A failure clears what a previous version had cataloged; a deletion keeps it for the record.
    if (fields.status !== 'deleted') {
      if (!('errorCode' in fields)) {
        delete doc.errorCode;
        delete doc.errorMessage;
      }
    } else {
      doc.original = prev?.original;
      doc.research = prev?.research;
      doc.sha256 = prev?.sha256;
      doc.deidentification = prev?.deidentification;
      doc.modality = prev?.modality;
    }
    await deps.index.put(doc, existing?.etag);
  });
}

async function recordFailure(
  deps: IngestDeps,
  request: IngestRequest,
  loc: SourceLocation,
  id: string,
  props: SourceProperties,
  existing: Versioned<IngestionDocument> | undefined,
  e: unknown,
): Promise<IngestOutcome> {
  const code = isPipelineError(e) ? e.code : ErrorCodes.INTERNAL;
  // Our own messages carry no PHI; a foreign error's message might, so it is not kept.
  const message = isPipelineError(e) ? e.message : 'unexpected error while processing the file';
  const quarantined = code === ErrorCodes.DEID_VERIFICATION_FAILED || code === ErrorCodes.DEID_BURNED_IN_ANNOTATION;
  if (!isPipelineError(e)) deps.log.error(`event ${request.eventId}: unexpected ${(e as Error | null)?.name ?? 'error'} while processing source ${id.slice(0, 12)}`);
  let quarantineBlob: string | undefined;
  try {
    quarantineBlob = await deps.quarantine.quarantine(loc.container, loc.blobName, props.etag, { errorCode: code, eventId: request.eventId });
  } catch (qe) {
    // When the failed version is already gone, the event for the new state is handled on its own.
    if (!isPipelineError(qe, ErrorCodes.SOURCE_CHANGED) && !isPipelineError(qe, ErrorCodes.SOURCE_NOT_FOUND)) throw qe;
  }
  // A failed new version must not leave the research copy of an older version of this source behind.
  if (existing?.doc.research) await removeResearchInstance(deps, existing.doc, loc.canonicalUrl);
  await writeIndex(deps, id, loc, props, request, existing, {
    status: quarantined ? 'quarantined' : 'failed',
    errorCode: code,
    errorMessage: message,
    quarantineBlob,
    deidentification: (e as { audit?: IngestionDocument['deidentification'] }).audit,
    research: undefined,
  });
  deps.log.warn(`event ${request.eventId}: source ${id.slice(0, 12)} ${quarantined ? 'quarantined' : 'failed'}: ${code}`);
  deps.telemetry.trackFailure(code, 'ingest');
  return { status: quarantined ? 'quarantined' : 'failed', errorCode: code };
}

/**
 * Removes the research instance that a source produced, if that source is still the one the
 * research side holds it from, and refreshes the summaries.
 */
async function removeResearchInstance(deps: IngestDeps, record: IngestionDocument, canonicalUrl: string): Promise<boolean> {
  const r = record.research;
  if (!r) return false;
  const sourceKey = keyed(deps.deid.key, 'source', canonicalUrl).slice(0, 32);
  return untilNotOutrun('research instance', async () => {
    const inst = await deps.catalog.getInstance(r.studyInstanceUid, r.sopInstanceUid);
    if (!inst || inst.doc.sourceKey !== sourceKey) return false;
    const version = await deps.research.getVersion(r.blob);
    if (version && version.rank === inst.doc.sourceRank) await deps.research.delete(r.blob, version.etag);
    await deps.catalog.deleteInstance(r.studyInstanceUid, r.sopInstanceUid, inst.etag);
    await deps.catalog.refreshSummaries(r.studyInstanceUid, r.seriesInstanceUid);
    return true;
  });
}

/** The blob is gone: record the deletion and withdraw what it contributed to the research side. */
async function handleGone(deps: IngestDeps, request: IngestRequest, loc: SourceLocation, id: string, depth: number): Promise<IngestOutcome> {
  const existing = await deps.index.get(id);
  if (existing?.doc.status === 'deleted') return { status: 'unchanged' };
  const removed = existing ? await removeResearchInstance(deps, existing.doc, loc.canonicalUrl) : false;
  await writeIndex(deps, id, loc, undefined, request, existing, { status: 'deleted', deletedAt: (deps.now ?? (() => new Date()))().toISOString() });
  deps.log.info(`event ${request.eventId}: source ${id.slice(0, 12)} deleted${removed ? '; its research instance withdrawn' : ''}`);
  // Another source of the same instance, if one is still cataloged, now provides it.
  const sop = existing?.doc.research?.sopInstanceUid;
  if (removed && sop && depth < 2) {
    const others = (await deps.index.findByResearchInstance(sop)).filter((d) => d.id !== id && d.status === 'cataloged');
    others.sort((a, b) => ((b.sourceRank ?? '') > (a.sourceRank ?? '') ? 1 : -1));
    const next = others[0];
    if (next) {
      await writeIndexForReprocess(deps, next);
      await ingestSourceFile(deps, { ...request, kind: 'created' }, { canonicalUrl: next.sourceUrl, container: next.container, blobName: next.blobName }, depth + 1);
    }
  }
  return { status: 'deleted' };
}

/** Marks a record so that the next ingestion of it is not skipped as already done. */
async function writeIndexForReprocess(deps: IngestDeps, record: IngestionDocument): Promise<void> {
  const current = await deps.index.get(record.id);
  if (!current) return;
  try {
    await deps.index.put({ ...current.doc, status: 'processing' }, current.etag);
  } catch (e) {
    if (!isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) throw e;
  }
}
