/**
 * Blob storage as the ingestion uses it: the landing (source) container, the research
 * container and the quarantine container. Interfaces here; the Azure adapter is in
 * blobStores.ts.
 */
export interface SourceProperties {
  etag: string;
  size: number;
  lastModified: Date;
  contentType?: string;
}

/** A blob's current version and its first bytes, from one request. */
export interface OpenedSource {
  props: SourceProperties;
  /** The first bytes of that version (as many as were asked for, or the whole blob when smaller). */
  head: AsyncIterable<Uint8Array>;
  /** Releases the response when the head will not be read (a duplicate event). */
  discard(): void;
}

/** The landing container(s) the archive replicates into. Identified data: read only. */
export interface SourceStore {
  /**
   * The properties of a blob's current version and a stream of its first `count` bytes, in
   * one request; undefined when the blob does not exist. Throws PipelineError SERVICE_* on
   * service faults (the stream too, while it is read). Idempotent: a read. The caller reads the
   * head or calls `discard`.
   */
  open(container: string, blobName: string, count: number, options?: { abortSignal?: AbortSignal }): Promise<OpenedSource | undefined>;
  /**
   * Properties of a blob, or undefined when it does not exist (any more).
   * Throws PipelineError SERVICE_* on service faults. Idempotent.
   */
  getProperties(container: string, blobName: string, options?: { abortSignal?: AbortSignal }): Promise<SourceProperties | undefined>;
  /**
   * Streams a byte range of one version of a blob (ETag). Throws SOURCE_CHANGED when the
   * blob no longer has that ETag, SOURCE_NOT_FOUND when it is gone, SERVICE_* on faults.
   */
  readRange(container: string, blobName: string, etag: string, offset: number, count: number | undefined, options?: { abortSignal?: AbortSignal }): Promise<AsyncIterable<Uint8Array>>;
}

export interface ResearchBlobVersion {
  etag: string;
  /** The rank of the source this copy came from (see InstanceDocument.sourceRank). */
  rank: string;
  /** Keyed hash of the source URL this copy came from (absent on copies written before 0.5.0). */
  sourceKey?: string;
  /** Keyed hash of the source version (URL and ETag) this copy came from (absent before 0.5.0). */
  sourceVersion?: string;
}

/** Which source version a research copy comes from: written with the copy, so that it can always be traced back. */
export interface ResearchCopyOrigin {
  rank: string;
  keyId: string;
  sourceKey: string;
  sourceVersion: string;
}

/** The research container: de-identified copies named by research UIDs only. */
export interface ResearchStore {
  /** The current copy's ETag and rank, or undefined. Idempotent. */
  getVersion(blobName: string): Promise<ResearchBlobVersion | undefined>;
  /**
   * Writes a copy from a stream, committing it only if the blob is still as `expected` says
   * (undefined: must not exist). When the blob changed meanwhile, the result says so (after
   * the upload) and keeps the staged data, so that it can be committed again without the
   * stream. Throws SERVICE_* on service faults.
   */
  write(blobName: string, data: AsyncIterable<Uint8Array>, options: ResearchCopyOrigin & { expected?: ResearchBlobVersion; abortSignal?: AbortSignal }): Promise<ResearchWrite>;
  /** Deletes the copy if it still has the given ETag; a missing blob is not an error. */
  delete(blobName: string, etag?: string): Promise<void>;
  /**
   * Names of the copies that a source (keyed hash of its URL) produced, whatever its version,
   * found by the copies' blob index tag `sourcekey` without the catalog: what a deletion must
   * withdraw even when the catalog lost its documents or never got them. Azure's tag index is
   * eventually consistent (a copy written seconds ago may be missing). A query. Idempotent.
   */
  findBySource(sourceKey: string): Promise<string[]>;
  /**
   * Streams `count` bytes of the current copy from `offset` (to its end when `count` is
   * undefined; fewer when the copy ends first, none from its end on), as the copy is read by
   * WADO-RS and the frame index: one ranged request, the bytes never held whole. Throws
   * NOT_FOUND when the copy does not exist, SERVICE_* on service faults (the stream too, while
   * it is read). With `ifMatch`, reads only that version of the copy: CATALOG_CONFLICT when the
   * copy is another one now (replaced). Idempotent: a read.
   */
  readRange(blobName: string, offset: number, count: number | undefined, options?: CopyReadOptions): Promise<CopyRead>;
}

export interface CopyReadOptions {
  abortSignal?: AbortSignal;
  /** The ETag the copy must still have (If-Match). */
  ifMatch?: string;
}

/** The bytes of one ranged read of a research copy, and the ETag of the version they come from (absent when nothing was read). */
export interface CopyRead extends AsyncIterable<Uint8Array> {
  readonly etag?: string;
  /**
   * The source version the copy read was made from (its origin, as written with it): what the
   * catalog document of the copy names too, so that a reader can tell a copy already replaced
   * by another source's from the one its document describes. Absent when nothing was read, or
   * for a copy written without it.
   */
  readonly sourceVersion?: string;
  /** Bytes of the whole copy the read was of (as the storage service gives it with the range); absent when nothing was read. */
  readonly size?: number;
}

/** What one conditional write of a research copy did. */
export type ResearchWrite =
  /** The copy is the blob's current version now. */
  | { committed: true; size: number; etag: string }
  /** The blob was not as expected: nothing was committed, the data stays staged. */
  | { committed: false; staged: StagedWrite };

/** Data uploaded but not committed, after a write found the blob changed. */
export interface StagedWrite {
  /** Bytes staged. */
  size: number;
  /**
   * Commits the staged data under a new expectation (undefined: the blob must not exist) and
   * resolves with the new ETag. Throws CATALOG_CONFLICT when the blob changed again, SERVICE_*
   * on service faults.
   */
  recommit(expected: ResearchBlobVersion | undefined): Promise<string>;
}

/** The quarantine container: copies of files that could not be ingested, with the reason. */
export interface QuarantineStore {
  /** Copies a source blob version into quarantine; idempotent (same name, same content). */
  quarantine(sourceContainer: string, sourceBlob: string, etag: string, metadata: { errorCode: string; eventId: string }): Promise<string>;
}

/** The total size an HTTP Content-Range header states ("bytes 0-99/1234" gives 1234); undefined when it states none. */
export function totalOfContentRange(contentRange: string | undefined): number | undefined {
  const m = /\/(\d+)\s*$/.exec(contentRange ?? '');
  return m ? Number(m[1]) : undefined;
}
