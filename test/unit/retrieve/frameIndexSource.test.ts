/**
 * Which fragments make which frame when no real sample shows it (offset tables, start
 * markers, nothing), how the index is kept (document or sidecar), and the FrameIndexSource:
 * the index an ingestion kept, or one built and kept on first use.
 */
import { bufferReader } from '../../../shared/dicom/byteReader';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { readHeader } from '../../../shared/dicom/parser';
import { ErrorCodes, PipelineError } from '../../../shared/errors';
import type { SourceLocation } from '../../../shared/events/ingestEvents';
import { ingestSourceFile, researchBlobName } from '../../../shared/ingest/ingestSourceFile';
import type { FrameIndex } from '../../../shared/retrieve/frameIndex';
import { buildFrameIndexFromCopy, CompactFrameIndex, encapsulatedFrameIndex, expandFrameIndex, FrameIndexBuilder, PixelLayout, pixelLayout } from '../../../shared/retrieve/frameIndexBuilder';
import { decodeFrameIndex, encodeFrameIndex, frameIndexSidecarName, MAX_INLINE_FRAME_INDEX, placeFrameIndex } from '../../../shared/retrieve/frameIndexCodec';
import { CatalogFrameIndexSource } from '../../../shared/retrieve/frameIndexSource';
import { MemoryResearchStore, MemoryWorld, memoryWorld } from '../fakes';
import { sha256 } from './independentFrames';
import { syntheticEncapsulated, SyntheticOptions } from './syntheticFrames';

/** The frames at an encapsulated index's ranges in a file. */
function framesAt(file: Buffer, index: FrameIndex): Buffer[] {
  if (index.kind !== 'encapsulated') throw new Error(`expected encapsulated, got ${index.kind}`);
  return index.frames.map((ranges) => Buffer.concat(ranges.map(([o, n]) => file.subarray(o, o + n))));
}

/** The index of a whole file, as the builder finds it. */
async function indexOf(file: Buffer): Promise<CompactFrameIndex> {
  const reader = bufferReader(file);
  const header = await readHeader(reader, { maxHeaderBytes: 1 << 24 });
  const builder = new FrameIndexBuilder(pixelLayout(header.dataset, header.encoding, header.transferSyntaxUid, header.pixelData, reader.position));
  builder.feed(file);
  return builder.result();
}

const base: SyntheticOptions = { frames: 40, fragmentsPerFrame: 3, frameBytes: 300, basicOffsetTable: true };

describe('fragments to frames', () => {
  test.each([
    ['a basic offset table, 3 fragments per frame', base],
    ['no offset table, 3 fragments per frame (start markers)', { ...base, basicOffsetTable: false }],
    ['an extended offset table, 2 fragments per frame', { ...base, basicOffsetTable: false, fragmentsPerFrame: 2, extendedOffsetTable: true }],
    ['one fragment per frame, no offset table', { ...base, basicOffsetTable: false, fragmentsPerFrame: 1 }],
    ['one frame in 5 fragments', { ...base, frames: 1, fragmentsPerFrame: 5 }],
  ])('given %s, then each frame is found whole', async (_what, options) => {
    const { file, frames } = syntheticEncapsulated(options);
    const index = expandFrameIndex(await indexOf(file));
    expect(framesAt(file, index)).toEqual(frames);
  });

  test('given a written copy whose basic offset table names one fragment per frame, then its item headers are read concurrently and give the streamed index', async () => {
    const { file, frames } = syntheticEncapsulated({ frames: 200, fragmentsPerFrame: 1, frameBytes: 20_000, basicOffsetTable: true });
    const research = new MemoryResearchStore();
    research.blobs.set('c.dcm', { data: file, version: { etag: '"1"', rank: 'r' } });
    let inFlight = 0;
    let most = 0;
    const readRange = research.readRange.bind(research);
    research.readRange = async (name: string, offset: number, count: number | undefined) => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setTimeout(r, 1));
      inFlight--;
      return readRange(name, offset, count);
    };
    const ranged = await buildFrameIndexFromCopy(research, 'c.dcm', file.length);
    expect(expandFrameIndex(ranged)).toEqual(expandFrameIndex(await indexOf(file)));
    expect(framesAt(file, expandFrameIndex(ranged)).map(sha256)).toEqual(frames.map(sha256));
    expect(most).toBeGreaterThan(1);
  });

  const layout: PixelLayout = { valueOffset: 1000, length: undefined, littleEndian: true, transferSyntaxUid: '1.2.840.10008.1.2.5', samplesPerPixel: 1, numberOfFrames: 2 };
  const fragments = { bot: new Uint8Array(0), lengths: [10, 10, 10, 10], imageStarts: [false, false, false, false] };

  test('given an extended offset table, then it decides over start markers', () => {
    const index = encapsulatedFrameIndex({ ...layout, transferSyntaxUid: '1.2.840.10008.1.2.4.50', extendedOffsets: [0, 36] }, { ...fragments, imageStarts: [true, true, true, true] });
    expect(index.kind === 'encapsulated' && [...index.frameStarts!]).toEqual([0, 2]);
  });

  test('given a basic offset table that names no fragment, then it is not used', () => {
    const bot = Buffer.alloc(8);
    bot.writeUInt32LE(0, 0);
    bot.writeUInt32LE(20, 4);
    expect(() => encapsulatedFrameIndex(layout, { ...fragments, bot })).toThrow(expect.objectContaining({ code: ErrorCodes.DICOM_MALFORMED }) as PipelineError);
    bot.writeUInt32LE(18, 4);
    const index = encapsulatedFrameIndex(layout, { ...fragments, bot });
    expect(index.kind === 'encapsulated' && [...index.frameStarts!]).toEqual([0, 1]);
  });

  test('given more fragments than frames, no offset table and no start markers, then DICOM_MALFORMED', () => {
    expect(() => encapsulatedFrameIndex(layout, fragments)).toThrow(/cannot be told apart/);
  });

  test('given native data shorter than its frames, then DICOM_MALFORMED', async () => {
    const { nativeFrameIndex } = await import('../../../shared/retrieve/frameIndexBuilder');
    expect(() => nativeFrameIndex({ ...layout, length: 255, rows: 16, columns: 16, bitsAllocated: 8, numberOfFrames: 1 })).toThrow(/shorter/);
    expect(nativeFrameIndex({ ...layout, length: 256, rows: 16, columns: 16, bitsAllocated: 8, numberOfFrames: 1 })).toEqual({ kind: 'native', count: 1, offset: 1000, frameLength: 256 });
  });
});

describe('keeping the index', () => {
  test('given an index, then its stored form decodes to the same index', async () => {
    const index = await indexOf(syntheticEncapsulated(base).file);
    expect(expandFrameIndex(decodeFrameIndex(encodeFrameIndex(index)))).toEqual(expandFrameIndex(index));
  });

  test('given 4,100 frames of 2 fragments, then the index goes to a sidecar and the document keeps a pointer of a few bytes', async () => {
    const index = await indexOf(syntheticEncapsulated({ frames: 4100, fragmentsPerFrame: 2, frameBytes: 40, basicOffsetTable: true }).file);
    const placed = placeFrameIndex(index, { researchBlob: 's/r/i.dcm', sourceVersion: 'v', size: 1 });
    expect(placed.stored).toEqual({ kind: 'sidecar', blob: 's/r/i.dcm.frames', count: 4100 });
    expect(JSON.stringify(placed.stored).length).toBeLessThan(100);
    expect(placed.sidecar!.length).toBeGreaterThan(MAX_INLINE_FRAME_INDEX);
  });
});

const ENDPOINT = 'http://127.0.0.1:10000/devstoreaccount1';
const loc = (name: string): SourceLocation => ({ canonicalUrl: `${ENDPOINT}/anq-replica/${name}`, container: 'anq-replica', blobName: name });

/** Ingests a generated file through the core on fakes; its research copy, document and frames. */
async function ingested(w: MemoryWorld, options: SyntheticOptions) {
  const { file, frames } = syntheticEncapsulated(options);
  const name = `f${Math.random().toString(36).slice(2)}.dcm`;
  w.source.put('anq-replica', name, file);
  const out = await ingestSourceFile(w.deps, { kind: 'created', eventId: name, eventType: 'Microsoft.Storage.BlobCreated', url: loc(name).canonicalUrl }, loc(name));
  expect(out.status).toBe('cataloged');
  const r = out.research!;
  const instance = { studyInstanceUid: r.studyInstanceUid, sopInstanceUid: r.sopInstanceUid, researchBlob: researchBlobName(r) };
  return { frames, instance, copy: () => w.research.blobs.get(instance.researchBlob)!.data, doc: async () => (await w.catalog.getInstance(r.studyInstanceUid, r.sopInstanceUid))!.doc };
}

/** Counts the ranged reads of each research blob. */
function countReads(w: MemoryWorld): Map<string, number> {
  const reads = new Map<string, number>();
  const readRange = w.research.readRange.bind(w.research);
  w.research.readRange = (name: string, offset: number, count: number | undefined) => {
    reads.set(name, (reads.get(name) ?? 0) + 1);
    return readRange(name, offset, count);
  };
  return reads;
}

describe('CatalogFrameIndexSource', () => {
  let w: MemoryWorld;
  beforeEach(() => {
    w = memoryWorld(defaultProfile());
  });

  test('given an ingested multi-frame instance, then its document keeps the index and a frame request reads nothing of the copy to find it', async () => {
    const i = await ingested(w, base);
    expect((await i.doc()).frames?.kind).toBe('encapsulated');
    const reads = countReads(w);
    const index = await new CatalogFrameIndexSource(w).frameIndex(i.instance);
    expect(framesAt(i.copy(), index)).toEqual(i.frames);
    expect(reads.size).toBe(0);
  });

  test('given the index the caller read with the document, then neither the catalog nor the copy is read again', async () => {
    const i = await ingested(w, base);
    const frames = (await i.doc()).frames!;
    const reads = countReads(w);
    const getInstance = jest.spyOn(w.catalog, 'getInstance');
    const index = await new CatalogFrameIndexSource(w).frameIndex({ ...i.instance, frames });
    expect(framesAt(i.copy(), index)).toEqual(i.frames);
    expect(getInstance).not.toHaveBeenCalled();
    expect(reads.size).toBe(0);
  });

  test('given a document without an index (ingested before 0.7.0), then the first use builds it from the copy and keeps it, and the next use reads only the document', async () => {
    const i = await ingested(w, base);
    const read = (await w.catalog.getInstance(i.instance.studyInstanceUid, i.instance.sopInstanceUid))!;
    const { frames: _kept, ...old } = read.doc;
    await w.catalog.putInstance(old, read.etag);
    const reads = countReads(w);
    const first = await new CatalogFrameIndexSource(w).frameIndex(i.instance);
    expect(framesAt(i.copy(), first)).toEqual(i.frames);
    expect(reads.get(i.instance.researchBlob)).toBeGreaterThan(0);
    expect((await i.doc()).frames?.kind).toBe('encapsulated');
    reads.clear();
    const next = await new CatalogFrameIndexSource(w).frameIndex(i.instance);
    expect(next).toEqual(first);
    expect(reads.size).toBe(0);
  });

  test('given 4,100 frames, then the index is in a sidecar, frame 4,000 is found, and the document stays small', async () => {
    const i = await ingested(w, { frames: 4100, fragmentsPerFrame: 2, frameBytes: 40, basicOffsetTable: true });
    const doc = await i.doc();
    expect(doc.frames).toEqual({ kind: 'sidecar', blob: frameIndexSidecarName(i.instance.researchBlob), count: 4100 });
    expect(JSON.stringify(doc).length).toBeLessThan(20 * 1024);
    const reads = countReads(w);
    const index = await new CatalogFrameIndexSource(w).frameIndex(i.instance);
    expect(framesAt(i.copy(), index)[3999]).toEqual(i.frames[3999]);
    expect([...reads.keys()]).toEqual([frameIndexSidecarName(i.instance.researchBlob)]);
  });

  test('given a sidecar named by the document the caller read, with its version, then the first request reads only the sidecar and later ones read nothing', async () => {
    const i = await ingested(w, { frames: 4100, fragmentsPerFrame: 2, frameBytes: 40, basicOffsetTable: true });
    const { frames, updatedAt, size, sourceVersion } = await i.doc();
    const looked = { ...i.instance, frames, updatedAt, size, sourceVersion };
    const source = new CatalogFrameIndexSource(w);
    const getInstance = jest.spyOn(w.catalog, 'getInstance');
    const reads = countReads(w);
    expect(framesAt(i.copy(), await source.frameIndex(looked))[3999]).toEqual(i.frames[3999]);
    expect([...reads.entries()]).toEqual([[frameIndexSidecarName(i.instance.researchBlob), 1]]);
    reads.clear();
    expect(framesAt(i.copy(), await source.frameIndex(looked))[0]).toEqual(i.frames[0]);
    expect(reads.size).toBe(0);
    expect(getInstance).not.toHaveBeenCalled();
  });

  test('given a sidecar named by a document version the sidecar is not of (the copy replaced since), then the document is read and its own index used', async () => {
    const i = await ingested(w, { frames: 4100, fragmentsPerFrame: 2, frameBytes: 40, basicOffsetTable: true });
    const { frames, updatedAt, size } = await i.doc();
    const getInstance = jest.spyOn(w.catalog, 'getInstance');
    const index = await new CatalogFrameIndexSource(w).frameIndex({ ...i.instance, frames, updatedAt, size, sourceVersion: 'an earlier version' });
    expect(framesAt(i.copy(), index)[3999]).toEqual(i.frames[3999]);
    expect(getInstance).toHaveBeenCalledTimes(1);
  });

  test('given a sidecar that another version of the copy left, then it is not used: the index is built again and the sidecar replaced', async () => {
    const i = await ingested(w, { frames: 4100, fragmentsPerFrame: 2, frameBytes: 40, basicOffsetTable: true });
    const sidecar = w.research.blobs.get(frameIndexSidecarName(i.instance.researchBlob))!;
    sidecar.data = Buffer.from(sidecar.data.toString('utf8').replace(/"sourceVersion":"[^"]*"/, '"sourceVersion":"another"'));
    const index = await new CatalogFrameIndexSource(w).frameIndex(i.instance);
    expect(framesAt(i.copy(), index)[3999]).toEqual(i.frames[3999]);
    expect(w.research.blobs.get(frameIndexSidecarName(i.instance.researchBlob))!.data.toString('utf8')).not.toContain('"another"');
  });

  test('given an instance not cataloged, then NOT_FOUND', async () => {
    await expect(new CatalogFrameIndexSource(w).frameIndex({ studyInstanceUid: '1.2', sopInstanceUid: '1.3', researchBlob: 'x' })).rejects.toMatchObject({ code: ErrorCodes.NOT_FOUND });
  });
});
