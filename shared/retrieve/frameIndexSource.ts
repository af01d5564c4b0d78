/**
 * The frame index of a research instance, as retrieve asks for it: from the instance document,
 * or the sidecar blob it names; for an instance ingested before the index existed (or whose
 * index could not be kept at ingestion), built from the copy with ranged reads on first use
 * and kept, so that the next request finds it. First use rather than a re-index command: no
 * step for an operator to forget, and only the instances anyone asks frames of pay for it.
 */
import type { ResearchCatalogWriter, Versioned } from '../catalog/catalogStore';
import type { InstanceDocument, StoredFrameIndex } from '../catalog/documents';
import { ErrorCodes, isPipelineError, PipelineError } from '../errors';
import { Lru } from '../lru';
import type { ResearchCopyOrigin, ResearchStore } from '../storage/stores';
import type { FrameIndex, FrameIndexSource, IndexedInstance } from './frameIndex';
import { buildFrameIndexFromCopy, CompactFrameIndex, expandFrameIndex, WatchedOutput } from './frameIndexBuilder';
import { decodeFrameIndex, MAX_INLINE_FRAME_INDEX, placeFrameIndex, readSidecar } from './frameIndexCodec';

/** The copy an index belongs to, and the origin its sidecar is written with (as the copy's). */
export type IndexedCopy = Pick<InstanceDocument, 'researchBlob' | 'size' | 'sourceVersion'> & ResearchCopyOrigin;

/**
 * Places an index for the document: returns what the document keeps, after writing the sidecar
 * when the index is too large for it. The sidecar is written over any earlier one (a reader
 * checks it against the document's source version and size). Throws SERVICE_* on faults.
 */
export async function keepFrameIndex(research: ResearchStore, copy: IndexedCopy, index: CompactFrameIndex, maxInline = MAX_INLINE_FRAME_INDEX): Promise<StoredFrameIndex> {
  const { stored, sidecar } = placeFrameIndex(index, copy, maxInline);
  if (stored.kind === 'sidecar' && sidecar) {
    const origin: ResearchCopyOrigin = { rank: copy.rank, keyId: copy.keyId, sourceKey: copy.sourceKey, sourceVersion: copy.sourceVersion };
    const one = async function* () {
      yield sidecar;
    };
    const written = await research.write(stored.blob, one(), { ...origin, expected: undefined });
    if (!written.committed) {
      try {
        await written.staged.recommit(await research.getVersion(stored.blob));
      } catch (e) {
        // Another writer's sidecar won the race; the reader checks whose it is.
        if (!isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) throw e;
      }
    }
  }
  return stored;
}

/** The copy as the document names it, with its origin for a sidecar. */
function copyOf(doc: InstanceDocument): IndexedCopy {
  return { researchBlob: doc.researchBlob, size: doc.size, sourceVersion: doc.sourceVersion ?? '', rank: doc.sourceRank, keyId: doc.deidentification.keyId, sourceKey: doc.sourceKey };
}

async function readAll(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of chunks) parts.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  return Buffer.concat(parts);
}

export interface FrameIndexSourceDeps {
  research: ResearchStore;
  catalog: Pick<ResearchCatalogWriter, 'getInstance' | 'putInstance'>;
  /** Largest index kept in the document (JSON characters); larger ones go to a sidecar. */
  maxInline?: number;
  /** Indexes held in memory (by copy and document version): a viewer asks for every frame of an instance in turn. */
  cacheEntries?: number;
}

/** FrameIndexSource over the research catalog and container. */
export class CatalogFrameIndexSource implements FrameIndexSource {
  private readonly cache: Lru<FrameIndex>;

  constructor(private readonly deps: FrameIndexSourceDeps) {
    this.cache = new Lru(deps.cacheEntries ?? 64);
  }

  /**
   * The instance's frame index. Kept in the document the caller read: nothing is read. In a
   * sidecar the caller's document names (with its version): the sidecar once, then nothing.
   * Otherwise one document read, and one sidecar read for a large index the first time; built
   * from the copy and kept when the document has none. Throws NOT_FOUND for an instance not
   * cataloged (or whose copy is gone), SERVICE_* on faults, DICOM_* when the copy's frames
   * cannot be located. Idempotent.
   */
  async frameIndex(instance: IndexedInstance): Promise<FrameIndex> {
    if (instance.frames && instance.frames.kind !== 'sidecar') return expandFrameIndex(decodeFrameIndex(instance.frames));
    const named = await this.namedSidecar(instance);
    if (named) return named;
    const read = await this.deps.catalog.getInstance(instance.studyInstanceUid, instance.sopInstanceUid);
    if (!read) throw new PipelineError(ErrorCodes.NOT_FOUND, 'no such research instance');
    const key = `${read.doc.researchBlob}\0${read.etag}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    const index = expandFrameIndex((await this.kept(read.doc)) ?? (await this.build(read)));
    this.cache.set(key, index);
    return index;
  }

  /**
   * The index in the sidecar that the caller's document names, when the caller gave that
   * document's version: kept by that version, so that the frames of a large instance, asked
   * for one after the other, cost no catalog read each. Undefined when the caller gave no
   * version, or the sidecar is missing or another copy's (the document is then read).
   */
  private async namedSidecar(instance: IndexedInstance): Promise<FrameIndex | undefined> {
    const { frames, updatedAt, size, sourceVersion } = instance;
    if (frames?.kind !== 'sidecar' || updatedAt === undefined || size === undefined || sourceVersion === undefined) return undefined;
    const key = `${instance.researchBlob}\0${updatedAt}\0${size}\0${sourceVersion}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    const compact = await this.sidecar(frames.blob, { size, sourceVersion });
    if (!compact) return undefined;
    const index = expandFrameIndex(compact);
    this.cache.set(key, index);
    return index;
  }

  /** The index the document keeps, or its sidecar; undefined when there is none (or the sidecar is not this copy's). */
  private async kept(doc: InstanceDocument): Promise<CompactFrameIndex | undefined> {
    const stored = doc.frames;
    if (!stored) return undefined;
    if (stored.kind !== 'sidecar') return decodeFrameIndex(stored);
    return this.sidecar(stored.blob, doc);
  }

  /** A sidecar's index when it is the copy's (its size and source version); undefined when missing or another copy's. */
  private async sidecar(blob: string, copy: { size: number; sourceVersion?: string }): Promise<CompactFrameIndex | undefined> {
    try {
      return readSidecar(await readAll(await this.deps.research.readRange(blob, 0, undefined)), copy);
    } catch (e) {
      if (isPipelineError(e, ErrorCodes.NOT_FOUND)) return undefined;
      throw e;
    }
  }

  /** Builds the index from the copy and keeps it; a document changed meanwhile keeps what its writer gave it. */
  private async build(read: Versioned<InstanceDocument>): Promise<CompactFrameIndex> {
    const doc = read.doc;
    const index = await buildFrameIndexFromCopy(this.deps.research, doc.researchBlob, doc.size);
    const stored = await keepFrameIndex(this.deps.research, copyOf(doc), index, this.deps.maxInline);
    if (JSON.stringify(stored) !== JSON.stringify(doc.frames)) {
      try {
        await this.deps.catalog.putInstance({ ...doc, frames: stored }, read.etag);
      } catch (e) {
        if (!isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) throw e;
      }
    }
    return index;
  }
}

/**
 * The index an ingestion keeps in its instance document (after writing its sidecar when
 * large), or undefined when it has none: the frames could not be located, or the sidecar could
 * not be written. Never throws: retrieve builds a missing index on first use, so an index is
 * no reason to fail (or retry) an ingestion. Logs the error code only.
 */
export async function ingestedFrameIndex(research: ResearchStore, watched: WatchedOutput, copy: IndexedCopy, log: { warn(message: string): void }): Promise<StoredFrameIndex | undefined> {
  const result = watched.result();
  try {
    if ('failure' in result) throw result.failure;
    return await keepFrameIndex(research, copy, result.index);
  } catch (e) {
    log.warn(`frame index of ${copy.researchBlob} not kept (${isPipelineError(e) ? e.code : 'unexpected error'}); built on first use`);
    return undefined;
  }
}
