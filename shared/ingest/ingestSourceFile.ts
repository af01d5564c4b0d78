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
import { retryOnConflict } from '../catalog/retryOnConflict';
import { ByteReader } from '../dicom/byteReader';
import type { DeidContext } from '../dicom/deid/engine';
import { catalogMetadata } from '../dicom/metadata';
import { ErrorCodes, isPipelineError, PipelineError } from '../errors';
import type { IngestRequest, SourceLocation } from '../events/ingestEvents';
import type { EventPublisher } from '../events/publisher';
import { watchFrames } from '../retrieve/frameIndexBuilder';
import { ingestedFrameIndex } from '../retrieve/frameIndexSource';
import type { OpenedSource, QuarantineStore, ResearchCopyOrigin, ResearchStore, SourceProperties, SourceStore } from '../storage/stores';
import type { Telemetry } from '../telemetry/telemetry';
import type { BurnedInPolicy } from './burnedIn';
import { sha256For } from './chunkHasher';
import { auditRecord, DeidAudit, prepareForResearch } from './deidentifyInstance';
import { generationOf, generationTag, isCurrentGeneration, needsReindex } from './generation';
import type { OcrQueue } from './ocrQueue';

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
  deid: DeidContext;
  limits: import('../dicom/limits').IngestLimits;
  burnedIn: BurnedInPolicy;
  now?: () => Date;
  /**
   * Called once the file's bytes are no longer held (research copy written, source read to
   * the end): the catalog updates that follow wait on the service, not on memory, so the
   * concurrency slot (see Limiter) can go to the next file.
   */
  fileDone?: () => void;
  /**
   * OCR's own bound (OCR_WORKERS, OCR_QUEUE_MAX, OCR_WAIT_MAX_MS). With it, a file to OCR lets
   * its source go and gives its slot up (`outsideSlot`) while it waits for and runs OCR; without
   * it, OCR runs in the file's slot.
   */
  ocrQueue?: OcrQueue;
  /** Runs `wait` outside the concurrency slot, taking a slot again after (see Limiter.run). */
  outsideSlot?: <T>(wait: () => Promise<T>) => Promise<T>;
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
async function* sourceChunks(a: Attempt, opened: OpenedSource | undefined): AsyncGenerator<Uint8Array> {
  const { deps, loc, props } = a;
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

/** `length` bytes of the version being ingested from `offset` (OCR's sampled frames). */
async function readSourceRange(a: Attempt, offset: number, length: number): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  for await (const chunk of await a.deps.source.readRange(a.loc.container, a.loc.blobName, a.props.etag, offset, length)) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

/**
 * A file's wait for OCR (on OCR's own bound) or for its series' check by another file
 * (seriesCheck.ts), holding nothing the ingestion limit is about: the source is let go (bytes
 * buffered past the header dropped, the response closed) and the slot given up meanwhile, so
 * that a burst of clips to OCR cannot take every slot from the files behind them. After, a slot is taken again and the source read on
 * by range from where the header ended, in the same version (ETag).
 */
async function waitOutsideSlot<T>(a: Attempt, reader: ByteReader, wait: () => Promise<T>): Promise<T> {
  const at = reader.position;
  await reader.suspend();
  try {
    return await (a.deps.outsideSlot ?? ((w) => w()))(wait);
  } finally {
    // Also after a failed wait: the caller may go on without OCR (an unflagged image whose
    // pixels the engine cannot read passes). The range is requested on the first read only.
    reader.resume(sourceFrom(a, at));
  }
}

/** The version being ingested from `offset` to its end, requested on the first read. */
async function* sourceFrom(a: Attempt, offset: number): AsyncGenerator<Uint8Array> {
  if (a.props.size > offset) yield* await a.deps.source.readRange(a.loc.container, a.loc.blobName, a.props.etag, offset, undefined);
}

/** What one ingestion of one source works with, handed from step to step as one object. */
interface Ingestion {
  deps: IngestDeps;
  request: IngestRequest;
  loc: SourceLocation;
  /** The index record's id (hash of the source URL). */
  id: string;
  /** Keyed hash of the source URL: research copies and documents name their source by it. */
  sourceKey: string;
  /** How many times this event has had the current version ingested again (see reingest). */
  depth: number;
}

/** One attempt at ingesting one version of the source: what its steps share. */
interface Attempt extends Ingestion {
  props: SourceProperties;
  /** Keyed hash of this version (URL and ETag): what its research copy and document carry. */
  version: string;
  /** Its rank among the sources of the same instance (see sourceRank). */
  rank: string;
  /** The index record as read at the start of the ingestion: what the first commit expects. */
  known: Versioned<IngestionDocument> | undefined;
  /**
   * Set when the record names what another key or profile made (a re-index of the same version,
   * or a new version after a rotation): the rank its research copy was written with, which counts
   * as this source's own, not as another source's (ranks under two keys do not compare).
   */
  reindexOf?: { sourceRank?: string; generation: string };
}

function ingestionOf(deps: IngestDeps, request: IngestRequest, loc: SourceLocation, depth: number): Ingestion {
  return { deps, request, loc, id: sourceId(loc.canonicalUrl), sourceKey: keyed(deps.deid.key, 'source', loc.canonicalUrl).slice(0, 32), depth };
}

function attemptOn(ing: Ingestion, props: SourceProperties, known: Versioned<IngestionDocument> | undefined): Attempt {
  // Whatever the version: a record of another generation names a copy made under another key.
  const reindex = known && known.doc.status !== 'deleted' && !isCurrentGeneration(known.doc.deidentification, generationOf(ing.deps.deid));
  return {
    ...ing, props, known, version: versionKey(ing, props), rank: sourceRank(ing.deps.deid.key, ing.loc.canonicalUrl, props.lastModified),
    ...(reindex ? { reindexOf: { sourceRank: known.doc.sourceRank, generation: generationTag(generationOf(ing.deps.deid)) } } : {}),
  };
}

/** Times one event may have the current version ingested again before leaving it to Event Grid's retry. */
const MAX_REINGEST_DEPTH = 2;

/** A research instance as the index records it. */
type ResearchRef = NonNullable<IngestionDocument['research']>;

/** Who produced a research copy or document: enough to tell whether a withdrawal may remove it (`rank` on a copy, `sourceRank` on a document). */
type Origin = { sourceKey?: string; sourceVersion?: string; rank?: string; sourceRank?: string };

/**
 * Handles one request. Resolves with what happened; rejects only with a transient error
 * (a retry may fix it), so that Event Grid redelivers.
 */
export function ingestSourceFile(deps: IngestDeps, request: IngestRequest, loc: SourceLocation): Promise<IngestOutcome> {
  return ingest(ingestionOf(deps, request, loc, 0));
}

async function ingest(ing: Ingestion): Promise<IngestOutcome> {
  const { deps, request, loc } = ing;
  const started = Date.now();
  // One request finds the blob's current version and brings its first bytes (the whole file
  // when it is small); the index is read meanwhile.
  const [openResult, indexResult] = await Promise.allSettled([deps.source.open(loc.container, loc.blobName, SINGLE_READ_MAX), deps.index.get(ing.id)]);
  if (openResult.status === 'rejected') throw openResult.reason;
  const opened = openResult.value;
  if (indexResult.status === 'rejected') {
    opened?.discard();
    throw indexResult.reason;
  }
  if (!opened) return handleGone(ing);
  const props = opened.props;
  const existing = indexResult.value;
  const stale = existing !== undefined && needsReindex(existing.doc, generationOf(deps.deid));
  if (existing && existing.doc.eTag === props.etag && ['cataloged', 'failed', 'quarantined'].includes(existing.doc.status) && !stale) {
    opened.discard();
    deps.log.info(`event ${request.eventId}: source ${ing.id.slice(0, 12)} version already ${existing.doc.status}; nothing to do`);
    // An event for an older version that comes back (a retry after its ingestion failed half
    // way) sweeps what that version may have left: the current version's instance stays.
    if (request.etag !== undefined && unquoted(request.etag) !== unquoted(props.etag)) {
      const current = existing.doc.research;
      await withdrawOtherVersions(ing, { previous: undefined, contended: true }, current && { version: versionKey(ing, props), blob: current.blob });
    } else if (existing.doc.status === 'cataloged' && existing.doc.eventIds.includes(request.eventId)) {
      await announceAgain(ing, props, existing.doc);
    }
    return { status: 'unchanged' };
  }
  if (stale && existing.doc.eTag === props.etag) {
    deps.log.info(`event ${request.eventId}: source ${ing.id.slice(0, 12)} was cataloged under key ${existing.doc.deidentification?.keyId ?? '?'} and profile ${existing.doc.deidentification?.profile ?? '?'}; its research side is re-created under the current ones`);
  }

  let outcome: IngestOutcome;
  let current = props;
  // The opened bytes serve the first attempt only; a retry reads the version it found.
  let head: OpenedSource | undefined = opened;
  for (let tries = 1; ; tries++) {
    const attempt = attemptOn(ing, current, existing);
    try {
      const processed = await processVersion(attempt, head);
      outcome = 'refused' in processed ? await recordFailure(attempt, processed.refused, processed.audit) : processed;
      break;
    } catch (e) {
      head = undefined;
      if (isPipelineError(e, ErrorCodes.SOURCE_CHANGED) && tries < MAX_SOURCE_ATTEMPTS) {
        const next = await deps.source.getProperties(loc.container, loc.blobName);
        if (!next) return handleGone(ing);
        current = next;
        continue;
      }
      if (isPipelineError(e, ErrorCodes.SOURCE_NOT_FOUND)) return handleGone(ing);
      if (isPipelineError(e) && e.transient) {
        deps.telemetry.trackFailure(e.code, 'ingest');
        throw e;
      }
      outcome = await recordFailure(attempt, e);
      break;
    }
  }
  deps.telemetry.trackIngestion({ status: outcome.status, errorCode: outcome.errorCode, durationMs: Date.now() - started, bytes: current.size });
  return outcome;
}

const unquoted = (etag: string) => etag.replace(/"/g, '');

/** Keyed hash of one version of the source (URL and ETag): what its research copy and document carry. */
function versionKey(ing: Ingestion, props: SourceProperties): string {
  return keyed(ing.deps.deid.key, 'version', `${ing.loc.canonicalUrl}\0${props.etag}`).slice(0, 32);
}

async function processVersion(a: Attempt, opened: OpenedSource | undefined): Promise<IngestOutcome | { refused: PipelineError; audit: DeidAudit }> {
  const { deps, request, props } = a;
  const now = deps.now ?? (() => new Date());
  const ocrQueue = deps.ocrQueue;
  // A large source is hashed on the hashing thread while this one parses and uploads.
  const reader = new ByteReader(sourceChunks(a, opened), { hasher: sha256For(props.size) });
  const written = await (async () => {
    try {
      const preparation = await prepareForResearch(reader, {
        deid: deps.deid,
        maxHeaderBytes: deps.limits.maxHeaderBytes,
        limits: deps.limits,
        totalSize: props.size,
        burnedIn: deps.burnedIn,
        readSourceRange: (offset, length) => readSourceRange(a, offset, length),
        ...(ocrQueue ? { ocrStage: <T>(run: () => Promise<T>) => waitOutsideSlot(a, reader, () => ocrQueue.run(a.version, run)), waitStage: <T>(wait: () => Promise<T>) => waitOutsideSlot(a, reader, wait) } : {}),
      });
      if (!preparation.ok) return preparation;
      const { prepared } = preparation;
      // Before anything is written: the UIDs name documents and blobs.
      checkSourceUids(prepared.original);
      const blobName = researchBlobName(prepared.research);
      // The frame index is built as the copy goes out (see shared/retrieve/frameIndexBuilder.ts).
      const frames = watchFrames(prepared);
      const decision = await writeResearchCopy(a, blobName, frames.output);
      // Whatever was not read (a superseded copy, bytes after the data set) still counts for the source hash.
      await reader.drain();
      const sha256 = (await reader.sha256()) ?? '';
      return { ok: true as const, prepared, blobName, decision, sha256, frames };
    } finally {
      // A failed read releases its source response and the hash it started.
      await reader.close();
    }
  })();
  // The gate refused the output: recorded as a failure with the de-identification audit.
  if (!written.ok) return { refused: written.error, audit: written.audit };
  const { prepared, blobName, decision, sha256, frames } = written;
  const { original, research, sopClassUid, outputTs, report, header, dataset: ds, enc } = prepared;
  deps.fileDone?.();

  const metadata = catalogMetadata(ds, enc.littleEndian);
  const origin = { rank: a.rank, keyId: deps.deid.keyId, sourceKey: a.sourceKey, sourceVersion: a.version };
  const frameIndex = decision.kept ? await ingestedFrameIndex(deps.research, frames, { ...origin, researchBlob: blobName, size: decision.size }, deps.log) : undefined;
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
    sourceRank: a.rank,
    sourceKey: a.sourceKey,
    sourceVersion: a.version,
    deidentification: { profile: deps.deid.profile.name, profileVersion: deps.deid.profile.version, profileDigest: deps.deid.profile.digest, keyId: deps.deid.keyId },
    ...(frameIndex ? { frames: frameIndex } : {}),
    dicom: {
      ...metadata.instance,
      '00020010': { vr: 'UI', Value: [outputTs] },
    },
    updatedAt: now().toISOString(),
  };
  if (decision.kept) await putInstance(deps, instance, a.reindexOf?.sourceRank);
  await deps.catalog.refreshSummaries(research.studyInstanceUid, research.seriesInstanceUid);

  const mine: ResearchRef = { ...research, blob: blobName };
  const announcedAs = announcementId(a, props, a.reindexOf?.generation);
  const commit = await commitIndex(a, {
    status: 'cataloged',
    sha256,
    sourceRank: a.rank,
    ...(decision.kept ? { announcedAs } : {}),
    original,
    research: mine,
    deidentification: { ...auditRecord(deps.deid, report, 'passed'), ...(prepared.pixelsCleaned ? { pixelsCleaned: prepared.pixelsCleaned } : {}) },
    transferSyntaxUid: header.transferSyntaxUid,
    modality: metadata.modality,
    catalogedAt: now().toISOString(),
  });
  if (commit.kind === 'superseded') return withdrawSuperseded(a, mine, commit.current);

  await withdrawOtherVersions(a, commit, { version: a.version, blob: blobName });
  // Another version of this source may have written the same instance after this one did.
  if (decision.kept && commit.contended && !(await holdsVersion(a, mine))) {
    return reingest(a, 'an older version of the source wrote over its research instance');
  }

  if (decision.kept) {
    await deps.publisher.instanceCataloged({ ...research, sopClassUid, modality: metadata.modality, researchBlob: blobName, size: decision.size }, announcedAs);
  }
  deps.log.info(`event ${request.eventId}: ${decision.kept ? 'cataloged' : 'superseded by another source of the same instance'} as ${research.sopInstanceUid}`);
  return { status: decision.kept ? 'cataloged' : 'superseded', research };
}

/**
 * The id of the InstanceCataloged event of one source version. A re-index announces the same
 * version again: its event is told apart by the generation.
 */
function announcementId(ing: Ingestion, props: SourceProperties, generation: string | undefined): string {
  return keyed(ing.deps.deid.key, 'event', `${ing.loc.canonicalUrl}\0${props.etag}${generation !== undefined ? `\0${generation}` : ''}`).slice(0, 32);
}

/**
 * The event that cataloged this version, delivered again, announces its instance again under
 * the id of the first announcement: the record is written before the announcement, so a
 * publish that failed (and made Event Grid deliver the event again) would otherwise be lost for
 * good. Only that event (its id is in the record): another event for the version (the watcher's,
 * a backfill's) announces nothing. Only while the catalog's instance document is this version's:
 * an instance another source holds, or that a later version replaced, is not announced for this
 * one. Subscribers see the same id again when the first announcement did go out, as they do
 * when Event Grid delivers an event twice.
 */
async function announceAgain(ing: Ingestion, props: SourceProperties, record: IngestionDocument): Promise<void> {
  const { deps } = ing;
  if (!record.research) return;
  const held = await deps.catalog.getInstance(record.research.studyInstanceUid, record.research.sopInstanceUid);
  const doc = held?.doc;
  if (!doc || doc.sourceKey !== ing.sourceKey || doc.sourceVersion !== versionKey(ing, props)) return;
  await deps.publisher.instanceCataloged(
    { studyInstanceUid: doc.studyInstanceUid, seriesInstanceUid: doc.seriesInstanceUid, sopInstanceUid: doc.sopInstanceUid, sopClassUid: doc.sopClassUid, modality: doc.modality, researchBlob: doc.researchBlob, size: doc.size },
    // Records written before 0.14.4 have no id: the first announcement's, short of a re-index's.
    record.announcedAs ?? announcementId(ing, props, undefined),
  );
  deps.log.info(`event ${ing.request.eventId}: source ${ing.id.slice(0, 12)} announced again as ${doc.sopInstanceUid}`);
}

/** PS3.5 9.1: digits and dots, components without gaps, at most 64 characters, one value. */
const UID_PATTERN = /^[0-9]+(\.[0-9]+)*$/;

export function isValidUid(uid: string): boolean {
  return uid.length <= 64 && UID_PATTERN.test(uid);
}

/**
 * The source's identifying UIDs become document ids, partition keys and blob names (through
 * their research UIDs, one per value): a value that is not one valid UID fails the file.
 * Leading zeros in a component are tolerated: they are common in archives and harmless here.
 */
function checkSourceUids(original: { studyInstanceUid?: string; seriesInstanceUid?: string; sopInstanceUid?: string; sopClassUid?: string }): void {
  const names = { studyInstanceUid: 'StudyInstanceUID', seriesInstanceUid: 'SeriesInstanceUID', sopInstanceUid: 'SOPInstanceUID', sopClassUid: 'SOPClassUID' } as const;
  for (const [field, keyword] of Object.entries(names) as [keyof typeof names, string][]) {
    const value = original[field];
    if (value !== undefined && !isValidUid(value)) {
      // The value itself is PHI-adjacent: the message names the attribute only.
      throw new PipelineError(ErrorCodes.DICOM_INVALID_UID, `${keyword} is not a valid UID (PS3.5 9.1: digits and dots, at most 64 characters, one value)`);
    }
  }
}

/**
 * Writes the research copy unless a higher-ranked source already holds it. The decision and
 * the commit are tied by the blob's ETag, so two writers of one instance cannot both win.
 * The first attempt creates the blob only if it does not exist: a new instance, the common
 * case, costs one request. When a copy exists, its rank decides (a copy from another version
 * of the same source is always replaced: the index commit sorts versions out), and the staged
 * data is committed over it (or dropped) without reading the source again.
 */
async function writeResearchCopy(a: Attempt, blobName: string, output: () => AsyncGenerator<Uint8Array>): Promise<{ kept: boolean; size: number }> {
  const { research } = a.deps;
  const origin: ResearchCopyOrigin = { rank: a.rank, keyId: a.deps.deid.keyId, sourceKey: a.sourceKey, sourceVersion: a.version };
  // Read through whatever happens next: a broken file must fail whether or not another
  // source of its instance was ingested first.
  const written = await research.write(blobName, output(), { ...origin, expected: undefined });
  if (written.committed) return { kept: true, size: written.size };
  const { staged } = written;
  return retryOnConflict('research copy', async () => {
    const current = await research.getVersion(blobName);
    if (current && current.sourceKey !== origin.sourceKey && current.rank !== a.reindexOf?.sourceRank && current.rank > origin.rank) return { kept: false, size: 0 };
    await staged.recommit(current);
    return { kept: true, size: staged.size };
  });
}

/**
 * Creates or replaces the instance document unless a higher-ranked source holds it. The first
 * attempt only creates (a new instance costs one request); an existing document is read and
 * its rank decides. A document from another version of the same source is replaced.
 */
async function putInstance(deps: IngestDeps, doc: InstanceDocument, previousRank: string | undefined): Promise<void> {
  await retryOnConflict('instance document', async (round) => {
    if (round === 1) return deps.catalog.putInstance(doc, undefined);
    const existing = await deps.catalog.getInstance(doc.studyInstanceUid, doc.sopInstanceUid);
    // A document this source wrote under another key (a re-index, previousRank) is replaced.
    if (existing && existing.doc.sourceKey !== doc.sourceKey && existing.doc.sourceRank !== previousRank && existing.doc.sourceRank > doc.sourceRank) return;
    await deps.catalog.putInstance(doc, existing?.etag);
  });
}

type IndexFields = Partial<Omit<IngestionDocument, 'id' | 'sourceUrl' | 'container' | 'blobName' | 'eventIds' | 'attempts' | 'firstSeenAt' | 'updatedAt'>> &
  Pick<IngestionDocument, 'status'>;

/** What an index record says of the version it records. */
function versionFields(props: SourceProperties): Pick<IngestionDocument, 'eTag' | 'size' | 'lastModified'> {
  return { eTag: props.etag, size: props.size, lastModified: props.lastModified.toISOString() };
}

/** The index record that `fields` (with the version's: see versionFields) make of the previous one. */
function indexDocument(ing: Ingestion, prev: IngestionDocument | undefined, fields: IndexFields): IngestionDocument {
  const now = (ing.deps.now ?? (() => new Date()))().toISOString();
  const doc: IngestionDocument = {
    id: ing.id,
    sourceUrl: ing.loc.canonicalUrl,
    container: ing.loc.container,
    blobName: ing.loc.blobName,
    eventIds: [...(prev?.eventIds ?? []).filter((e) => e !== ing.request.eventId), ing.request.eventId].slice(-MAX_EVENT_IDS),
    attempts: (prev?.attempts ?? 0) + 1,
    firstSeenAt: prev?.firstSeenAt ?? now,
    updatedAt: now,
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
  return doc;
}

type Commit =
  /** `previous`: the record replaced; `contended`: another version of the source was recorded or raced this one. */
  | { kind: 'committed'; previous: IngestionDocument | undefined; contended: boolean }
  /** The blob holds another version now (or none): nothing was written. `current`: the record as last read. */
  | { kind: 'superseded'; current: Versioned<IngestionDocument> | undefined };

/**
 * Records the outcome of one source version in the index, by compare-and-swap on the record,
 * and only while that version is the blob's current one. Versions are not ordered by their
 * Last-Modified (one-second resolution) but by the store itself: a record is created, or a
 * record of another version replaced, only after a read of the blob, made after the record
 * was read, finds this version still current. A version that lost is told so, and withdraws
 * what it wrote.
 */
async function commitIndex(a: Attempt, fields: IndexFields): Promise<Commit> {
  const { deps, props } = a;
  let contended = false;
  return retryOnConflict('ingestion record', async (round) => {
    // The record read at the start serves the first round; a conflict means it moved on.
    const record = round === 1 ? a.known : await deps.index.get(a.id);
    const prev = record?.doc;
    if (round > 1 || (prev && prev.eTag !== props.etag)) contended = true;
    // A record of another version, or of a deletion, is replaced only while this version is
    // still the blob's current one. A first record needs no such read: it is created only if
    // none exists, and a deletion handled since the start has left its tombstone (handleGone),
    // which makes the create conflict and the next round read the blob.
    if (prev && (prev.eTag !== props.etag || prev.status === 'deleted')) {
      const now = await deps.source.getProperties(a.loc.container, a.loc.blobName);
      // The record read at the start may be older than the version that won: read it again.
      if (now?.etag !== props.etag) return { kind: 'superseded', current: round === 1 ? await deps.index.get(a.id) : record } as const;
    }
    // Before the record stops naming it: an instance of another generation goes (a crash
    // after this finds the record still naming it, and a redelivery withdraws it again).
    if (prev && prev.status !== 'deleted') await withdrawPreviousGeneration(a, prev, fields.research?.blob);
    await deps.index.put(indexDocument(a, prev, { ...versionFields(props), ...fields }), record?.etag);
    return { kind: 'committed', previous: prev, contended } as const;
  });
}

/** True when the research copy and document of `ref` are this version's (or another source's, which outranked it). */
async function holdsVersion(a: Attempt, ref: ResearchRef): Promise<boolean> {
  const [copy, doc] = await Promise.all([a.deps.research.getVersion(ref.blob), a.deps.catalog.getInstance(ref.studyInstanceUid, ref.sopInstanceUid)]);
  const ours = (o: Origin | undefined) => o !== undefined && (o.sourceKey !== a.sourceKey || o.sourceVersion === a.version);
  return ours(copy) && ours(doc?.doc);
}

/**
 * This version lost to a newer one (or to a deletion): what it wrote goes. When the current
 * version's instance has the same name, this version may have written over it; the current
 * version is then ingested again rather than its instance removed.
 */
async function withdrawSuperseded(a: Attempt, mine: ResearchRef, current: Versioned<IngestionDocument> | undefined): Promise<IngestOutcome> {
  if (current?.doc.status === 'cataloged' && current.doc.research?.blob === mine.blob) {
    await reingest(a, 'an older version of the source wrote over its research instance');
  } else {
    a.deps.log.info(`event ${a.request.eventId}: source ${a.id.slice(0, 12)} changed again before this version was recorded; its instance is withdrawn`);
    await withdrawInstance(a, mine, (o) => o.sourceKey === a.sourceKey && o.sourceVersion === a.version);
  }
  return { status: 'superseded' };
}

/** A research copy's place, from its name `{study}/{series}/{sop}.dcm`. */
function refOfBlob(name: string): ResearchRef | undefined {
  const m = /^([0-9.]+)\/([0-9.]+)\/([0-9.]+)\.dcm$/.exec(name);
  return m ? { studyInstanceUid: m[1]!, seriesInstanceUid: m[2]!, sopInstanceUid: m[3]!, blob: name } : undefined;
}

/**
 * Every research instance traced to this source, whatever its version: by the catalog's
 * instance documents and by the copies' index tags. The tags find a copy whose document was
 * never written (an ingestion that failed half way) or was lost with the catalog.
 */
/** Research instances found, and the first failure of a search that did not finish. */
interface Traced {
  refs: Map<string, ResearchRef>;
  failure?: unknown;
}

async function tracedInstances(ing: Ingestion): Promise<Traced> {
  const [docs, copies] = await Promise.allSettled([ing.deps.catalog.findInstancesBySource(ing.sourceKey), ing.deps.research.findBySource(ing.sourceKey)]);
  const refs = new Map<string, ResearchRef>();
  for (const { doc } of docs.status === 'fulfilled' ? docs.value : []) {
    refs.set(doc.researchBlob, { studyInstanceUid: doc.studyInstanceUid, seriesInstanceUid: doc.seriesInstanceUid, sopInstanceUid: doc.sopInstanceUid, blob: doc.researchBlob });
  }
  for (const name of copies.status === 'fulfilled' ? copies.value : []) {
    const ref = refOfBlob(name);
    if (ref && !refs.has(name)) refs.set(name, ref);
  }
  // One side failing still leaves the other's findings to withdraw; the caller then rethrows.
  const failed = [docs, copies].find((r) => r.status === 'rejected');
  return failed ? { refs, failure: failed.reason } : { refs };
}

/**
 * Withdraws each instance with `produced` as the test; the first failure (the search's first) is
 * rethrown after all were tried. `gone`, when given, collects the instances that are absent after
 * (removed now, or by an earlier delivery): those whose withdrawal is announced.
 */
async function withdrawAll(ing: Ingestion, traced: Traced, produced: (o: Origin) => boolean, gone?: ResearchRef[]): Promise<boolean> {
  let removed = false;
  let first = traced.failure;
  for (const ref of traced.refs.values()) {
    try {
      const result = await withdrawInstance(ing, ref, produced);
      removed = result === 'removed' || removed;
      if (result !== 'kept') gone?.push(ref);
    } catch (e) {
      first ??= e;
    }
  }
  if (first !== undefined) throw first;
  return removed;
}

/**
 * Announces (VNA.Catalog.InstanceWithdrawn, research UIDs only) each research instance a deleted
 * source no longer provides, so that data sharing withdraws the partners' copies. The id is keyed
 * by the source version the deletion found and the instance: a redelivered deletion, which finds
 * the instance gone already, publishes the same event again before the record is marked deleted.
 */
async function announceWithdrawals(ing: Ingestion, gone: ResearchRef[], eTag: string | undefined): Promise<void> {
  for (const ref of gone) {
    const { studyInstanceUid, seriesInstanceUid, sopInstanceUid } = ref;
    await ing.deps.publisher.instanceWithdrawn(
      { studyInstanceUid, seriesInstanceUid, sopInstanceUid },
      keyed(ing.deps.deid.key, 'withdrawn', `${ing.loc.canonicalUrl}\0${eTag ?? ''}\0${sopInstanceUid}`).slice(0, 32),
    );
  }
}

/**
 * After a version was recorded: the instances of every other version of the source go (the
 * one the replaced record named, and, when versions raced, any other traced to the source),
 * except `keep`, the recorded version's own instance (none when the version failed).
 */
async function withdrawOtherVersions(ing: Ingestion, commit: { previous: IngestionDocument | undefined; contended: boolean }, keep: { version: string; blob: string } | undefined): Promise<void> {
  const targets: Traced = commit.contended ? await tracedInstances(ing) : { refs: new Map() };
  const previous = commit.previous?.research;
  if (previous) targets.refs.set(previous.blob, previous);
  if (keep) targets.refs.delete(keep.blob);
  await withdrawAll(ing, targets, (o) => o.sourceKey === ing.sourceKey && o.sourceVersion !== keep?.version);
}

/**
 * The instance a record names, when another key or profile made it (a re-index, or a change or
 * deletion of a source after a rotation), is withdrawn and its withdrawal announced, unless it
 * is `keep` (the new copy has the same name: it was written over in place). Its copy and
 * document carry the source key of the other key, which this one cannot compute; they are
 * recognised by the rank the record holds, which embeds a keyed hash of this source's URL
 * under that key. Idempotent: a withdrawal redone finds nothing and announces with the same id.
 */
async function withdrawPreviousGeneration(ing: Ingestion, record: IngestionDocument, keep: string | undefined): Promise<{ handled: boolean; removed: boolean }> {
  const previous = record.research;
  const recorded = record.deidentification;
  const none = { handled: false, removed: false };
  if (!previous || !recorded || record.sourceRank === undefined || previous.blob === keep) return none;
  if (isCurrentGeneration(recorded, generationOf(ing.deps.deid))) return none;
  const gone: ResearchRef[] = [];
  const removed = await withdrawAll(ing, { refs: new Map([[previous.blob, previous]]) }, (o) => (o.rank ?? o.sourceRank) === record.sourceRank, gone);
  for (const ref of gone) {
    const { studyInstanceUid, seriesInstanceUid, sopInstanceUid } = ref;
    await ing.deps.publisher.instanceWithdrawn(
      { studyInstanceUid, seriesInstanceUid, sopInstanceUid },
      keyed(ing.deps.deid.key, 'withdrawn-generation', `${ing.loc.canonicalUrl}\0${record.eTag ?? ''}\0${generationTag(recorded)}\0${sopInstanceUid}`).slice(0, 32),
    );
  }
  if (removed) ing.deps.log.info(`event ${ing.request.eventId}: source ${ing.id.slice(0, 12)}: its research instance of key ${recorded.keyId}, profile ${recorded.profile} ${recorded.profileVersion} withdrawn`);
  return { handled: true, removed };
}

/**
 * Removes the research copy and the instance document of `ref`, each only if `produced` says
 * this source (version) made it, and refreshes the summaries. A copy written before copies
 * carried their origin counts as the document's when their ranks agree. While the catalog
 * cannot be read the copy goes at once (its own metadata names its source) and the catalog's
 * error is thrown after, so that the document goes on a retry. Otherwise the order is document,
 * summaries, copy: until the summaries are refreshed the copy stays, tagged with its source, so
 * that a retry finds this instance again (tracedInstances) even when nothing else names it, and
 * refreshes them. The summaries are refreshed whenever the document is gone, so that a retry
 * completes a refresh an earlier attempt did not.
 */
async function withdrawInstance(ing: Ingestion, ref: ResearchRef, produced: (o: Origin) => boolean): Promise<'removed' | 'absent' | 'kept'> {
  const { deps } = ing;
  return retryOnConflict('research instance', async () => {
    const [instRead, copyRead] = await Promise.allSettled([deps.catalog.getInstance(ref.studyInstanceUid, ref.sopInstanceUid), deps.research.getVersion(ref.blob)]);
    if (copyRead.status === 'rejected') throw copyRead.reason;
    const copy = copyRead.value;
    const inst = instRead.status === 'fulfilled' ? instRead.value : undefined;
    const instMine = inst !== undefined && inst.doc.researchBlob === ref.blob && produced(inst.doc);
    const copyMine = copy !== undefined && (copy.sourceKey !== undefined ? produced(copy) : instMine && copy.rank === inst?.doc.sourceRank);
    if (instRead.status === 'rejected') {
      if (copyMine) await deps.research.delete(ref.blob, copy.etag);
      throw instRead.reason;
    }
    if (instMine) await deps.catalog.deleteInstance(ref.studyInstanceUid, ref.sopInstanceUid, inst.etag);
    if (copyMine || instMine || inst === undefined) await deps.catalog.refreshSummaries(ref.studyInstanceUid, ref.seriesInstanceUid);
    if (copyMine) await deps.research.delete(ref.blob, copy.etag);
    return copyMine || instMine ? 'removed' : inst === undefined && copy === undefined ? 'absent' : 'kept';
  });
}

/**
 * Ingests the source's current version again: the record is marked so that it is not skipped
 * as done. Past MAX_REINGEST_DEPTH the event goes back to Event Grid (a transient error) and
 * its redelivery finds the record marked.
 */
async function reingest(ing: Ingestion, reason: string): Promise<IngestOutcome> {
  ing.deps.log.info(`event ${ing.request.eventId}: source ${ing.id.slice(0, 12)} is ingested again: ${reason}`);
  await markForReprocess(ing.deps, ing.id);
  if (ing.depth >= MAX_REINGEST_DEPTH) throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'the research instance kept changing while it was written');
  return ingest(ingestionOf(ing.deps, { ...ing.request, kind: 'created' }, ing.loc, ing.depth + 1));
}

/** Records a version that cannot be ingested (with the de-identification audit when the gate refused it), quarantined or failed by its code. */
async function recordFailure(a: Attempt, e: unknown, audit?: DeidAudit): Promise<IngestOutcome> {
  const { deps, request, id, props } = a;
  const code = isPipelineError(e) ? e.code : ErrorCodes.INTERNAL;
  // Our own messages carry no PHI; a foreign error's message might, so it is not kept.
  const message = isPipelineError(e) ? e.message : 'unexpected error while processing the file';
  const quarantined = QUARANTINED_CODES.has(code);
  if (!isPipelineError(e)) deps.log.error(`event ${request.eventId}: unexpected ${(e as Error | null)?.name ?? 'error'} while processing source ${id.slice(0, 12)}`);
  let quarantineBlob: string | undefined;
  try {
    quarantineBlob = await deps.quarantine.quarantine(a.loc.container, a.loc.blobName, props.etag, { errorCode: code, eventId: request.eventId });
  } catch (qe) {
    // When the failed version is already gone, the event for the new state is handled on its own.
    if (!isPipelineError(qe, ErrorCodes.SOURCE_CHANGED) && !isPipelineError(qe, ErrorCodes.SOURCE_NOT_FOUND)) throw qe;
  }
  const commit = await commitIndex(a, {
    status: quarantined ? 'quarantined' : 'failed',
    errorCode: code,
    errorMessage: message,
    quarantineBlob,
    deidentification: audit,
    research: undefined,
  });
  if (commit.kind === 'superseded') {
    deps.log.info(`event ${request.eventId}: source ${id.slice(0, 12)} failed (${code}) in a version that is no longer current; not recorded`);
    return { status: 'superseded', errorCode: code };
  }
  // A failed version must leave no research instance behind: an older version's, or a copy
  // this version wrote before it failed.
  await withdrawOtherVersions(a, { previous: commit.previous, contended: true }, undefined);
  deps.log.warn(`event ${request.eventId}: source ${id.slice(0, 12)} ${quarantined ? 'quarantined' : 'failed'}: ${code}`);
  deps.telemetry.trackFailure(code, 'ingest');
  return { status: quarantined ? 'quarantined' : 'failed', errorCode: code };
}

/** Codes whose source is kept in quarantine for review rather than only recorded as failed. */
const QUARANTINED_CODES: ReadonlySet<string> = new Set<string>([
  ErrorCodes.DEID_VERIFICATION_FAILED,
  ErrorCodes.DEID_BURNED_IN_ANNOTATION,
  ErrorCodes.DEID_DOCUMENT_NOT_CLEANED,
  ErrorCodes.DICOM_INVALID_UID,
]);

/**
 * The blob is gone: withdraw everything the source contributed to the research side (every
 * instance the catalog traces to it, whichever version wrote it) and record the deletion. A
 * blob never recorded leaves no record: an event for it changes nothing.
 */
async function handleGone(ing: Ingestion): Promise<IngestOutcome> {
  const { deps, request, id } = ing;
  const existing = await deps.index.get(id);
  if (existing?.doc.status === 'deleted') return { status: 'unchanged' };
  // Written again meanwhile: the event for the new blob does the work.
  if (existing && (await deps.source.getProperties(ing.loc.container, ing.loc.blobName))) return { status: 'unchanged' };

  // Whatever the record says, and when there is none (never recorded, or lost with the
  // catalog), every instance traced to the source is withdrawn.
  // An instance the record names from another key or profile goes by its rank (it carries
  // another key's source key), and is announced with that generation's withdrawal id.
  const previous = existing ? await withdrawPreviousGeneration(ing, existing.doc, undefined) : undefined;
  const targets = await tracedInstances(ing);
  if (existing?.doc.research && !previous?.handled) targets.refs.set(existing.doc.research.blob, existing.doc.research);
  if (previous?.handled && existing?.doc.research) targets.refs.delete(existing.doc.research.blob);
  const gone: ResearchRef[] = [];
  const removed = (await withdrawAll(ing, targets, (o) => o.sourceKey === ing.sourceKey, gone)) || previous?.removed === true;
  // Before the record says deleted: a failure here is redelivered and announced again.
  await announceWithdrawals(ing, gone, existing?.doc.eTag);
  if (!existing) return recordTombstone(ing, removed);

  const deletedAt = (deps.now ?? (() => new Date()))().toISOString();
  const recorded = await retryOnConflict('ingestion record', async (round) => {
    const record = round === 1 ? existing : await deps.index.get(id);
    if (!record || record.doc.status === 'deleted') return false;
    if (round > 1 && (await deps.source.getProperties(ing.loc.container, ing.loc.blobName))) return false;
    // A deletion keeps the version it found recorded.
    const { eTag, size, lastModified } = record.doc;
    await deps.index.put(indexDocument(ing, record.doc, { eTag, size, lastModified, status: 'deleted', deletedAt }), record.etag);
    return true;
  });
  deps.log.info(`event ${request.eventId}: source ${id.slice(0, 12)} deleted${removed ? '; its research instance withdrawn' : ''}`);
  if (!recorded) return { status: 'unchanged' };

  // Another source of the same instance, if one is still cataloged, now provides it.
  const sop = existing.doc.research?.sopInstanceUid;
  if (removed && sop && ing.depth < MAX_REINGEST_DEPTH) {
    const others = (await deps.index.findByResearchInstance(sop)).filter((d) => d.id !== id && d.status === 'cataloged');
    others.sort((x, y) => ((y.sourceRank ?? '') > (x.sourceRank ?? '') ? 1 : -1));
    const next = others[0];
    if (next) {
      await markForReprocess(deps, next.id);
      await ingest(ingestionOf(deps, { ...request, kind: 'created' }, { canonicalUrl: next.sourceUrl, container: next.container, blobName: next.blobName }, ing.depth + 1));
    }
  }
  return { status: 'deleted' };
}

/**
 * A deletion of a source with no record leaves a tombstone: an ingestion of a version read
 * before the deletion, still in flight, then finds its first-record create refused and reads
 * the blob before it records anything (commitIndex). When a record appeared meanwhile (that
 * ingestion committed first), its instance is withdrawn and the record marked deleted, unless
 * the blob exists again.
 */
async function recordTombstone(ing: Ingestion, removed: boolean): Promise<IngestOutcome> {
  const { deps, request, id } = ing;
  const deletedAt = (deps.now ?? (() => new Date()))().toISOString();
  const outcome = await retryOnConflict('ingestion record', async (round): Promise<'tombstone' | 'deleted' | 'unchanged'> => {
    const record = round === 1 ? undefined : await deps.index.get(id);
    if (record?.doc.status === 'deleted') return 'unchanged';
    if (record && (await deps.source.getProperties(ing.loc.container, ing.loc.blobName))) return 'unchanged';
    const research = record?.doc.research;
    if (research) {
      const gone: ResearchRef[] = [];
      await withdrawAll(ing, { refs: new Map([[research.blob, research]]) }, (o) => o.sourceKey === ing.sourceKey, gone);
      await announceWithdrawals(ing, gone, record?.doc.eTag);
    }
    const fields = record ? { eTag: record.doc.eTag, size: record.doc.size, lastModified: record.doc.lastModified } : {};
    await deps.index.put(indexDocument(ing, record?.doc, { ...fields, status: 'deleted', deletedAt }), record?.etag);
    return record ? 'deleted' : 'tombstone';
  });
  if (outcome === 'tombstone') {
    deps.log.info(`event ${request.eventId}: source ${id.slice(0, 12)} does not exist and had no record; a deletion is recorded${removed ? ' and research instances traced to it withdrawn' : ''}`);
    return { status: removed ? 'deleted' : 'unchanged' };
  }
  if (outcome === 'deleted') deps.log.info(`event ${request.eventId}: source ${id.slice(0, 12)} deleted while its first version was recorded; its research instance withdrawn`);
  return { status: outcome === 'deleted' || removed ? 'deleted' : 'unchanged' };
}

/** Marks a record so that the next ingestion of it is not skipped as already done. */
async function markForReprocess(deps: IngestDeps, id: string): Promise<void> {
  const current = await deps.index.get(id);
  if (!current || current.doc.status === 'processing') return;
  try {
    await deps.index.put({ ...current.doc, status: 'processing' }, current.etag);
  } catch (e) {
    if (!isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) throw e;
  }
}
