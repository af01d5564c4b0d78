/**
 * WADO-RS (PS3.18 10.4) over the research copies: instances, metadata, frames and bulk data.
 *
 * Only the research catalog and the research container are read, so nothing identified can be
 * served. The bytes of a retrieved instance are its research blob's bytes, streamed: parts are
 * opened one after the other and read as the client takes them. Nothing is transcoded (see
 * negotiate.ts). The HTTP side (functions/wado.ts) turns a WadoAnswer into a response and a
 * thrown PipelineError into its status.
 */
import { setTimeout as delay } from 'node:timers/promises';

import type { ResearchCatalogReader } from '../catalog/researchCatalog';
import type { HeaderLimits } from '../dicom/limits';
import { ErrorCodes, isPipelineError, PipelineError } from '../errors';
import type { CopyRead, CopyReadOptions } from '../storage/stores';
import { type CopyHeader, elementAt, pixelDataPath, readCopyHeader, type ResearchReader } from './copyHeader';
import type { ByteRange, FrameIndex, FrameIndexSource } from './frameIndex';
import { bitPackedFrameRange, repackBitFrame } from './frameIndexBits';
import { checkFrameNumber, encapsulatedValueEnd, frameRanges, lengthOf, parseFrameList, parseRange } from './frames';
import { instanceUrl, MetadataCache,metadataOf } from './instanceMetadata';
import { afterOpened, concatenated, multipartBody, multipartContentType, multipartLength, newBoundary, type Part } from './multipart';
import { negotiateBulkData, negotiateFrames, negotiateInstances, negotiateMetadata, parseAccept } from './negotiate';
import { findResearchInstances, type ResearchInstance, ResearchInstanceCache, type RetrieveScope } from './researchInstances';

export type WadoResource = 'instances' | 'metadata' | 'frames' | 'bulkdata';

export interface WadoDeps {
  catalog: ResearchCatalogReader;
  research: ResearchReader;
  frameIndex: FrameIndexSource;
  headerLimits: HeaderLimits;
  metadataCache: MetadataCache;
  /** Recent catalog lookups (undefined: every request asks the catalog). */
  instanceCache?: ResearchInstanceCache;
}

/** A WADO-RS request, whatever carried it. */
export interface WadoRequest {
  resource: WadoResource;
  scope: RetrieveScope;
  /** `{frames}` of a frames request. */
  frames?: string;
  /** `{path}` of a bulk data request: tags and item indexes ("7FE00010", "00540016/0/00181072"). */
  path?: string;
  accept: string | null;
  range: string | null;
  /** The DICOMweb root the request came through (`https://host/api/dicomweb`), for BulkDataURIs. */
  root: string;
  abortSignal?: AbortSignal;
  /**
   * Told what the answer will carry (its status and instances) once the instances are found,
   * and run while the first part is opened: the access audit is then written alongside the
   * first read rather than after it. No answer is given until it resolves; when it fails, the
   * retrieve fails with its error and the opened part is closed unread.
   */
  disclosing?: (status: 200 | 206, returned: ResearchInstance[]) => Promise<void>;
}

export interface WadoAnswer {
  status: 200 | 206;
  headers: Record<string, string>;
  body: AsyncIterable<Uint8Array> | string;
  /** The research instances whose bytes or data sets the answer carries, for the access audit. */
  returned: ResearchInstance[];
}

/** Metadata of a series is read this many copies at a time. */
const METADATA_CONCURRENCY = 8;

/**
 * Lookups of one request at most when the copy read is already another source's than its
 * catalog document says (a replacement under way: the copy is committed first, its document
 * follows in one catalog write), and the waits before the second and third.
 */
const REPLACING_LOOKUPS = 3;
const REPLACING_WAITS_MS = [50, 250];

/**
 * Answers one WADO-RS request. Throws PipelineError: QUERY_INVALID (400: a bad UID, frame list
 * or Accept), NOT_FOUND (404), NOT_ACCEPTABLE (406), RANGE_NOT_SATISFIABLE (416), SERVICE_*
 * (503) when the catalog or the first read of storage fails, or when the copy stays another
 * source's than its document through REPLACING_LOOKUPS lookups. A storage failure after the
 * answer has started ends its body with the error. Read-only; safe to repeat.
 */
export async function retrieve(deps: WadoDeps, request: WadoRequest): Promise<WadoAnswer> {
  const ranges = parseAccept(request.accept);
  const frameList = request.resource === 'frames' ? parseFrameList(request.frames) : [];
  if (request.resource === 'metadata') negotiateMetadata(ranges);
  const lookup = request.abortSignal ? { abortSignal: request.abortSignal } : {};
  const cache = deps.instanceCache;
  for (let lookups = 1; ; lookups++) {
    const instances = cache ? await cache.find(deps.catalog, request.scope, lookup) : await findResearchInstances(deps.catalog, request.scope, lookup);
    try {
      return await answer(deps, request, instances, ranges, frameList);
    } catch (e) {
      const stale = staleReads.get(e as object);
      // A copy replaced or removed since a remembered lookup named it: the catalog says what is there now.
      if (stale === 'gone' && cache && lookups === 1) {
        cache.forget(request.scope);
        continue;
      }
      // The copy is already another source's, its document not yet: asked again once it has followed.
      if (stale === 'replacing' && lookups < REPLACING_LOOKUPS) {
        cache?.forget(request.scope);
        await delay(REPLACING_WAITS_MS[lookups - 1], undefined, request.abortSignal ? { signal: request.abortSignal } : {});
        continue;
      }
      throw e;
    }
  }
}

async function answer(deps: WadoDeps, request: WadoRequest, instances: ResearchInstance[], ranges: ReturnType<typeof parseAccept>, frameList: number[]): Promise<WadoAnswer> {
  switch (request.resource) {
    case 'instances':
      return retrieveInstances(deps, request, instances, ranges);
    case 'metadata':
      return retrieveMetadata(deps, request, instances);
    case 'frames':
      return retrieveFrames(deps, request, only(instances), ranges, frameList);
    case 'bulkdata':
      return retrieveBulkData(deps, request, only(instances), ranges);
  }
}

async function* oneChunk(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

function only(instances: ResearchInstance[]): ResearchInstance {
  const [one] = instances;
  if (!one) throw new PipelineError(ErrorCodes.NOT_FOUND, 'no research instance has this UID');
  return one;
}

/**
 * Failures of reads that a new catalog lookup may cure: `gone`, the copy is no longer the
 * version a remembered lookup read (412 on If-Match) or no longer there (404); `replacing`, the
 * copy read was made from another source version than the lookup's document names.
 */
const staleReads = new WeakMap<object, 'gone' | 'replacing'>();

/**
 * How a copy is read: the request's abort signal, and, once a version of the copy has been
 * read after this lookup, that version only (If-Match). A remembered lookup (instanceCache)
 * then never pairs its frame index with the bytes of a replaced copy.
 */
function readOptions(request: WadoRequest, instance: ResearchInstance): CopyReadOptions {
  return { ...(request.abortSignal ? { abortSignal: request.abortSignal } : {}), ...(instance.copyEtag !== undefined ? { ifMatch: instance.copyEtag } : {}) };
}

/** A ranged read of an instance's copy (see readOptions); remembers the version first read. */
async function readCopy(deps: WadoDeps, request: WadoRequest, instance: ResearchInstance, offset: number, count: number | undefined): Promise<CopyRead> {
  const options = readOptions(request, instance);
  let read: CopyRead;
  try {
    read = await deps.research.readRange(instance.researchBlob, offset, count, options);
  } catch (e) {
    // A replaced copy (412 on If-Match), or a copy gone (404), also before any read through a kept
    // lookup pinned its ETag (the copy removed, or moved, since the lookup): the catalog is asked again.
    if (isPipelineError(e, ErrorCodes.NOT_FOUND) || (options.ifMatch !== undefined && isPipelineError(e, ErrorCodes.CATALOG_CONFLICT))) staleReads.set(e, 'gone');
    throw e;
  }
  // Bytes of another copy than the document describes (its frame index, size and syntax are
  // that copy's): another source version, another size, or too short to hold the range. Not one
  // of them is given out.
  if (!describes(instance, read, offset, count)) {
    await discard(read);
    const e = new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'the research copy is being replaced and its catalog entry does not describe it yet; retry');
    staleReads.set(e, 'replacing');
    throw e;
  }
  if (instance.copyEtag === undefined && read.etag !== undefined) instance.copyEtag = read.etag;
  return read;
}

/** False when a read shows a copy other than the one the instance's document describes. */
function describes(instance: ResearchInstance, read: CopyRead, offset: number, count: number | undefined): boolean {
  if (instance.sourceVersion !== undefined && read.sourceVersion !== undefined && read.sourceVersion !== instance.sourceVersion) return false;
  if (read.size !== undefined && read.size !== instance.size) return false;
  // Nothing read (the range starts past the copy's end) where the document has bytes.
  return !(read.etag === undefined && count !== 0 && offset < instance.size);
}

/** The research reader for one instance's header (readCopyHeader): reads as readCopy does. */
function copyReader(deps: WadoDeps, request: WadoRequest, instance: ResearchInstance): ResearchReader {
  return { readRange: (_blob, offset, count) => readCopy(deps, request, instance, offset, count) };
}

/** Ends a stream that will not be read (its connection is released). */
async function discard(stream: AsyncIterable<Uint8Array>): Promise<void> {
  await stream[Symbol.asyncIterator]().return?.();
}

/**
 * Opens the first part before the answer is given, so that a copy that cannot be read gives
 * its status (404, 503) rather than a 200 that breaks off. `disclosing` (the access audit) runs
 * alongside; when it fails, the opened part is closed unread and its error thrown.
 */
async function withFirstOpened(parts: Part[], disclosing?: () => Promise<void>): Promise<Part[]> {
  const [first, ...rest] = parts;
  if (!first) {
    await disclosing?.();
    return parts;
  }
  const [opened, told] = await Promise.allSettled([first.open(), disclosing?.()]);
  if (told.status === 'rejected') {
    if (opened.status === 'fulfilled') await discard(opened.value);
    throw told.reason;
  }
  if (opened.status === 'rejected') throw opened.reason;
  return [{ ...first, open: async () => opened.value }, ...rest];
}

function disclosingOf(request: WadoRequest, status: 200 | 206, returned: ResearchInstance[]): (() => Promise<void>) | undefined {
  const hook = request.disclosing;
  return hook ? () => hook(status, returned) : undefined;
}

async function retrieveInstances(deps: WadoDeps, request: WadoRequest, instances: ResearchInstance[], ranges: ReturnType<typeof parseAccept>): Promise<WadoAnswer> {
  const { multipart } = negotiateInstances(ranges, instances.map((i) => i.transferSyntaxUid), request.scope.instance !== undefined);
  const parts = await withFirstOpened(
    instances.map((instance): Part => ({
      contentType: `application/dicom; transfer-syntax=${instance.transferSyntaxUid}`,
      location: instanceUrl(request.root, instance),
      open: () => readCopy(deps, request, instance, 0, undefined),
    })),
    disclosingOf(request, 200, instances),
  );
  if (!multipart) {
    const [part] = parts as [Part];
    return { status: 200, headers: { 'content-type': part.contentType }, body: concatenated([part.open]), returned: instances };
  }
  const boundary = newBoundary();
  return {
    status: 200,
    headers: { 'content-type': multipartContentType('application/dicom', boundary) },
    body: multipartBody(parts, boundary),
    returned: instances,
  };
}

async function metadataJson(deps: WadoDeps, request: WadoRequest, instance: ResearchInstance): Promise<string> {
  const key = MetadataCache.keyOf(instance, request.root);
  const cached = deps.metadataCache.get(key);
  if (cached !== undefined) return cached;
  const header = await readCopyHeader(copyReader(deps, request, instance), instance, deps.headerLimits, request.abortSignal ? { abortSignal: request.abortSignal } : {});
  const json = JSON.stringify(metadataOf(header, instanceUrl(request.root, instance)));
  deps.metadataCache.set(key, json);
  return json;
}

async function retrieveMetadata(deps: WadoDeps, request: WadoRequest, instances: ResearchInstance[]): Promise<WadoAnswer> {
  const out: string[] = new Array<string>(instances.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(METADATA_CONCURRENCY, instances.length) }, async () => {
      for (let i = next++; i < instances.length; i = next++) out[i] = await metadataJson(deps, request, instances[i] as ResearchInstance);
    }),
  );
  return { status: 200, headers: { 'content-type': 'application/dicom+json' }, body: `[${out.join(',')}]`, returned: instances };
}

function openRanges(deps: WadoDeps, request: WadoRequest, instance: ResearchInstance, pieces: readonly ByteRange[]): () => Promise<AsyncIterable<Uint8Array>> {
  return async () => {
    // The first piece is read now: a copy that cannot be read fails the opening, not the body.
    const [first, ...rest] = pieces;
    if (!first) return concatenated([]);
    const opened = await readCopy(deps, request, instance, first[0], first[1]);
    return rest.length === 0 ? opened : afterOpened(opened, rest.map(([offset, length]) => () => readCopy(deps, request, instance, offset, length)));
  };
}

/**
 * A one-bit frame that does not start on a byte of the copy: its bytes read in one range and
 * moved to start at bit 0, as a frame of its own is sent (PS3.5 8.1.1: packed, least
 * significant bit first). At most a frame's bytes are held.
 */
function openBitPackedFrame(deps: WadoDeps, request: WadoRequest, instance: ResearchInstance, index: Extract<FrameIndex, { kind: 'bitPacked' }>, n: number): () => Promise<AsyncIterable<Uint8Array>> {
  const { offset, length, shift } = bitPackedFrameRange(index, n - 1);
  return async () => {
    const stream = await readCopy(deps, request, instance, offset, length);
    return (async function* () {
      const chunks: Uint8Array[] = [];
      for await (const chunk of stream) chunks.push(chunk);
      yield repackBitFrame(Buffer.concat(chunks), shift, index.frameBits);
    })();
  };
}

async function retrieveFrames(deps: WadoDeps, request: WadoRequest, instance: ResearchInstance, ranges: ReturnType<typeof parseAccept>, frameList: number[]): Promise<WadoAnswer> {
  const { partType } = negotiateFrames(ranges, instance.transferSyntaxUid);
  const index = await deps.frameIndex.frameIndex(instance);
  const base = instanceUrl(request.root, instance);
  const contentType = `${partType}; transfer-syntax=${instance.transferSyntaxUid}`;
  const parts = frameList.map((n): Part => {
    if (index.kind === 'bitPacked') {
      checkFrameNumber(index, n);
      return { contentType, length: Math.ceil(index.frameBits / 8), location: `${base}/frames/${n}`, open: openBitPackedFrame(deps, request, instance, index, n) };
    }
    const pieces = frameRanges(index, n);
    return { contentType, length: lengthOf(pieces), location: `${base}/frames/${n}`, open: openRanges(deps, request, instance, pieces) };
  });
  const boundary = newBoundary();
  const opened = await withFirstOpened(parts, disclosingOf(request, 200, [instance]));
  return { status: 200, headers: withLength({ 'content-type': multipartContentType(partType, boundary) }, multipartLength(opened, boundary)), body: multipartBody(opened, boundary), returned: [instance] };
}

/** `headers` with Content-Length when the body's length is known. */
function withLength(headers: Record<string, string>, length: number | undefined): Record<string, string> {
  return length === undefined ? headers : { ...headers, 'content-length': String(length) };
}

/** Where a bulk data value is: a range of the copy (the pixel data) or bytes of the header. */
type BulkValue = { kind: 'copy'; offset: number; length: number } | { kind: 'bytes'; bytes: Uint8Array };

async function locateBulkData(deps: WadoDeps, instance: ResearchInstance, header: CopyHeader, path: string): Promise<BulkValue> {
  const pixel = header.pixelData;
  if (pixel && path.toUpperCase() === pixelDataPath(header)) {
    if (pixel.length !== undefined) return { kind: 'copy', offset: pixel.valueOffset, length: pixel.length };
    // Encapsulated: the value as stored (item headers, fragments and delimiter), up to where the frame index says it ends.
    const end = encapsulatedValueEnd(await deps.frameIndex.frameIndex(instance));
    if (end === undefined) throw new PipelineError(ErrorCodes.INTERNAL, 'the frame index of encapsulated pixel data is not encapsulated');
    return { kind: 'copy', offset: pixel.valueOffset, length: end - pixel.valueOffset };
  }
  const el = elementAt(header.dataset, path);
  if (!el?.value || el.items) throw new PipelineError(ErrorCodes.NOT_FOUND, 'this instance has no bulk data at this path');
  return { kind: 'bytes', bytes: el.value };
}

async function retrieveBulkData(deps: WadoDeps, request: WadoRequest, instance: ResearchInstance, ranges: ReturnType<typeof parseAccept>): Promise<WadoAnswer> {
  const path = (request.path ?? '').replace(/\/+$/, '');
  if (!/^[0-9A-Fa-f]{8}(\/\d+\/[0-9A-Fa-f]{8})*$/.test(path)) {
    throw new PipelineError(ErrorCodes.QUERY_INVALID, 'bulkdata: the path must be tags (8 hex digits) and item indexes, as a BulkDataURI gives it');
  }
  const { multipart } = negotiateBulkData(ranges);
  const header = await readCopyHeader(copyReader(deps, request, instance), instance, deps.headerLimits, request.abortSignal ? { abortSignal: request.abortSignal } : {});
  const value = await locateBulkData(deps, instance, header, path);
  const length = value.kind === 'copy' ? value.length : value.bytes.length;
  const wanted = multipart ? { kind: 'whole' as const } : parseRange(request.range, length);
  const start = wanted.kind === 'partial' ? wanted.start : 0;
  const count = wanted.kind === 'partial' ? wanted.end - wanted.start + 1 : length;
  const open =
    value.kind === 'copy'
      ? () => readCopy(deps, request, instance, value.offset + start, count)
      : async () => oneChunk(value.bytes.subarray(start, start + count));
  const status = !multipart && wanted.kind === 'partial' ? 206 : 200;
  const [part] = await withFirstOpened([{ contentType: 'application/octet-stream', length: count, location: `${instanceUrl(request.root, instance)}/bulkdata/${path}`, open }], disclosingOf(request, status, [instance]));
  if (multipart) {
    const boundary = newBoundary();
    const headers = withLength({ 'content-type': multipartContentType('application/octet-stream', boundary) }, multipartLength([part as Part], boundary));
    return { status: 200, headers, body: multipartBody([part as Part], boundary), returned: [instance] };
  }
  const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'content-length': String(count), 'accept-ranges': 'bytes' };
  if (wanted.kind === 'partial') headers['content-range'] = `bytes ${wanted.start}-${wanted.end}/${length}`;
  return { status: wanted.kind === 'partial' ? 206 : 200, headers, body: concatenated([(part as Part).open]), returned: [instance] };
}
