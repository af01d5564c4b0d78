/**
 * Builds the frame index of a research copy (frameIndex.ts): while the copy is streamed out
 * at ingestion (FrameIndexBuilder watches the bytes go by, holding only item headers and the
 * basic offset table), or afterwards from the written copy with small ranged reads
 * (buildFrameIndexFromCopy, for copies ingested before the index existed). Both give the same
 * index for the same copy.
 *
 * Native data is arithmetic. Encapsulated data (PS3.5 A.4) is a basic offset table item, then
 * fragments; which fragments make which frame is decided, in this order, by: one frame (every
 * fragment); the Extended Offset Table; the Basic Offset Table; one fragment per frame when the
 * counts agree; a JPEG or JPEG 2000 start marker at the head of the fragments that start a
 * frame. When none settles it, the index fails with DICOM_MALFORMED.
 */
import { ByteReader, endsInsideElement, endsInsidePixelData } from '../dicom/byteReader';
import { asciiValue, DicomDataset, Encoding, uintValue } from '../dicom/dataset';
import { fragmentPastEnd, type PixelDataHeader, readHeader } from '../dicom/parser';
import { Tags } from '../dicom/tags';
import { ErrorCodes, PipelineError } from '../errors';
import type { ResearchStore } from '../storage/stores';
import type { ByteRange, FrameIndex } from './frameIndex';

const ITEM = 0xfffee000;
const SEQUENCE_DELIMITER = 0xfffee0dd;
/** Bytes of a fragment's head kept to recognise a start-of-image marker. */
const SNIFF_BYTES = 12;

/** What the research copy's header says of its pixel data: all the index needs. */
export interface PixelLayout {
  /** Offset, in the copy, of the pixel data value (just after its element header). */
  valueOffset: number;
  /** The value's length; undefined for encapsulated pixel data. */
  length: number | undefined;
  littleEndian: boolean;
  transferSyntaxUid: string;
  rows?: number;
  columns?: number;
  samplesPerPixel: number;
  bitsAllocated?: number;
  /**
   * NumberOfFrames as dcmtk and gdcm read it: an invalid IS such as "1A" counts by its leading
   * digits; 1 when absent, empty, without leading digits or not positive.
   */
  numberOfFrames: number;
  /** The Extended Offset Table's offsets (PS3.3 C.7.6.3.1.8), when the header has one. */
  extendedOffsets?: number[];
}

/**
 * The layout of the pixel data the copy's header describes, or undefined when it has none.
 * `valueOffset` is where the value starts in the copy.
 */
export function pixelLayout(ds: DicomDataset, enc: Encoding, transferSyntaxUid: string, pixel: PixelDataHeader | undefined, valueOffset: number): PixelLayout | undefined {
  if (!pixel) return undefined;
  const le = enc.littleEndian;
  const frames = Number.parseInt(asciiValue(ds.get(Tags.NumberOfFrames)) ?? '', 10);
  return {
    valueOffset,
    length: pixel.length,
    littleEndian: le,
    transferSyntaxUid,
    rows: uintValue(ds.get(Tags.Rows), le),
    columns: uintValue(ds.get(Tags.Columns), le),
    samplesPerPixel: uintValue(ds.get(Tags.SamplesPerPixel), le) ?? 1,
    bitsAllocated: uintValue(ds.get(Tags.BitsAllocated), le),
    numberOfFrames: Number.isFinite(frames) && frames > 0 ? frames : 1,
    extendedOffsets: extendedOffsets(ds, le),
  };
}

/** ExtendedOffsetTable (OV: 64-bit offsets), or undefined when absent or not a whole number of values. */
function extendedOffsets(ds: DicomDataset, le: boolean): number[] | undefined {
  const v = ds.get(Tags.ExtendedOffsetTable)?.value;
  if (!v || v.length === 0 || v.length % 8 !== 0) return undefined;
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  const out: number[] = [];
  for (let o = 0; o < v.length; o += 8) out.push(Number(dv.getBigUint64(o, le)));
  return out;
}

/**
 * An index as it is built and kept: encapsulated frames as the fragments' lengths (fragments
 * lie back to back, each after its 8-byte item header, so their lengths give their places)
 * and the first fragment of each frame.
 */
export type CompactFrameIndex =
  | Exclude<FrameIndex, { kind: 'encapsulated' }>
  | {
      kind: 'encapsulated';
      count: number;
      /** Offset in the copy of the first fragment's value. */
      start: number;
      /** Length of each fragment, in order. */
      lengths: Uint32Array;
      /** Index in `lengths` of each frame's first fragment; undefined for one fragment per frame. */
      frameStarts?: Uint32Array;
    };

/** The index as retrieve uses it: the byte ranges of each frame's fragments. */
export function expandFrameIndex(c: CompactFrameIndex): FrameIndex {
  if (c.kind !== 'encapsulated') return c;
  const ranges: ByteRange[] = [];
  let at = c.start;
  for (const length of c.lengths) {
    ranges.push([at, length]);
    at += length + 8;
  }
  const starts = c.frameStarts ?? Uint32Array.from(ranges, (_, i) => i);
  const frames: ByteRange[][] = [];
  for (let f = 0; f < starts.length; f++) frames.push(ranges.slice(starts[f], starts[f + 1] ?? ranges.length));
  return { kind: 'encapsulated', count: c.count, frames };
}

function malformed(message: string): PipelineError {
  return new PipelineError(ErrorCodes.DICOM_MALFORMED, `frame index: ${message}`);
}

/** Native frames by arithmetic. Throws DICOM_MALFORMED when the header does not say how large a frame is, or the value is too short for its frames. */
export function nativeFrameIndex(l: PixelLayout): CompactFrameIndex {
  const { rows, columns, bitsAllocated: bits } = l;
  if (!rows || !columns || !bits) throw malformed('Rows, Columns or BitsAllocated is missing');
  if (bits !== 1 && bits % 8 !== 0) throw malformed(`BitsAllocated ${bits} is neither 1 nor a multiple of 8`);
  const frameBits = rows * columns * l.samplesPerPixel * bits;
  if ((l.length ?? 0) * 8 < frameBits * l.numberOfFrames) throw malformed(`the pixel data is shorter than its ${l.numberOfFrames} frame(s)`);
  if (frameBits % 8 !== 0) return { kind: 'bitPacked', count: l.numberOfFrames, offset: l.valueOffset, frameBits };
  return { kind: 'native', count: l.numberOfFrames, offset: l.valueOffset, frameLength: frameBits / 8 };
}

/** JPEG (SOI, also JPEG-LS and lossless JPEG), a JPEG 2000 codestream (SOC then SIZ), or a JP2 file signature box. */
function startsImage(head: Uint8Array): boolean {
  if (head[0] === 0xff && head[1] === 0xd8) return true;
  if (head[0] === 0xff && head[1] === 0x4f && head[2] === 0xff && head[3] === 0x51) return true;
  return head.length >= 8 && head[0] === 0 && head[1] === 0 && head[2] === 0 && head[3] === 0x0c && head[4] === 0x6a && head[5] === 0x50 && head[6] === 0x20 && head[7] === 0x20;
}

/** JPEG-family transfer syntaxes (1.2.840.10008.1.2.4.x, JPIP excepted): their frames start with a marker. */
function markersApply(transferSyntaxUid: string): boolean {
  return transferSyntaxUid.startsWith('1.2.840.10008.1.2.4.') && !['1.2.840.10008.1.2.4.94', '1.2.840.10008.1.2.4.95'].includes(transferSyntaxUid);
}

/** What a walk of the encapsulated items found: the basic offset table and each fragment's length and head. */
interface Fragments {
  bot: Uint8Array;
  lengths: number[];
  /** Whether each fragment starts with a start-of-image marker. */
  imageStarts: boolean[];
}

/** Maps fragments to frames (the order in the module comment). Throws DICOM_MALFORMED when nothing settles it. */
export function encapsulatedFrameIndex(l: PixelLayout, f: Fragments): CompactFrameIndex {
  const count = l.numberOfFrames;
  if (f.lengths.length === 0) throw malformed('encapsulated pixel data holds no fragment');
  const start = l.valueOffset + 8 + f.bot.length + 8;
  const lengths = Uint32Array.from(f.lengths);
  const index = (frameStarts?: number[]): CompactFrameIndex => ({ kind: 'encapsulated', count, start, lengths, ...(frameStarts ? { frameStarts: Uint32Array.from(frameStarts) } : {}) });
  if (count === 1) return index(f.lengths.length === 1 ? undefined : [0]);
  // Offsets in both tables count from the first fragment's item header.
  const itemAt = new Map<number, number>();
  let at = 0;
  f.lengths.forEach((length, i) => {
    itemAt.set(at, i);
    at += 8 + length;
  });
  const byTable = (offsets: number[] | undefined): number[] | undefined => {
    if (!offsets || offsets.length !== count || offsets[0] !== 0) return undefined;
    const starts = offsets.map((o) => itemAt.get(o));
    return starts.every((s, i) => s !== undefined && (i === 0 || s > starts[i - 1]!)) ? (starts as number[]) : undefined;
  };
  const oneEach = f.lengths.length === count;
  const extended = byTable(l.extendedOffsets);
  if (extended) return index(oneEach ? undefined : extended);
  const basic = byTable(basicOffsets(f.bot));
  if (basic) return index(oneEach ? undefined : basic);
  if (oneEach) return index();
  if (markersApply(l.transferSyntaxUid)) {
    const starts = f.imageStarts.flatMap((s, i) => (s ? [i] : []));
    if (starts.length === count && starts[0] === 0) return index(starts);
  }
  throw malformed(`the ${f.lengths.length} fragments of ${count} frames cannot be told apart (no usable offset table)`);
}

function basicOffsets(bot: Uint8Array): number[] | undefined {
  if (bot.length === 0 || bot.length % 4 !== 0) return undefined;
  const dv = new DataView(bot.buffer, bot.byteOffset, bot.byteLength);
  return Array.from({ length: bot.length / 4 }, (_, i) => dv.getUint32(i * 4, true));
}

/**
 * Watches a research copy go by, chunk by chunk however it is cut, and gives its frame index
 * at the end. Memory: the basic offset table, an item header, and one number per fragment;
 * never the pixel data.
 */
export class FrameIndexBuilder {
  /** Bytes of the copy fed (or skipped) so far. */
  private at = 0;
  private readonly head = Buffer.alloc(8);
  private headFill = 0;
  /** Value bytes of the current item still to come. */
  private remaining = 0;
  private items = 0;
  private ended = false;
  private readonly botParts: Buffer[] = [];
  private readonly lengths: number[] = [];
  private readonly imageStarts: boolean[] = [];
  private readonly sniff = Buffer.alloc(SNIFF_BYTES);
  private sniffFill = 0;

  /**
   * `sourceSize`: the size of the file the bytes come from, when a fragment that declares more
   * than the file holds must fail as the streamed value fails (a source read by range for OCR).
   */
  constructor(
    private readonly layout: PixelLayout | undefined,
    private readonly sourceSize?: number,
  ) {}

  /** Where the next byte fed lies in the copy. */
  get offset(): number {
    return this.at;
  }

  /** True once nothing more is needed: no encapsulated pixel data, or its sequence delimiter passed. */
  get done(): boolean {
    return !this.layout || this.layout.length !== undefined || this.ended;
  }

  /** Feeds the next bytes of the copy. Throws DICOM_MALFORMED on item structure the index cannot follow. */
  feed(chunk: Uint8Array): void {
    const from = this.at;
    this.at += chunk.length;
    if (this.done) return;
    let o = Math.max(0, this.layout!.valueOffset - from);
    while (o < chunk.length && !this.ended) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - o);
        this.keep(chunk.subarray(o, o + n));
        this.remaining -= n;
        o += n;
        if (this.remaining === 0) this.endItem();
        continue;
      }
      const n = Math.min(8 - this.headFill, chunk.length - o);
      this.head.set(chunk.subarray(o, o + n), this.headFill);
      this.headFill += n;
      o += n;
      if (this.headFill === 8) this.startItem(from + o);
    }
  }

  /**
   * Bytes that may be passed over unread from here: the rest of a fragment whose head is
   * already seen (the ranged build's way over large fragments); 0 elsewhere.
   */
  get skippable(): number {
    return this.items >= 2 && this.sniffFill === SNIFF_BYTES ? this.remaining : 0;
  }

  /** The basic offset table once it has passed, else undefined. */
  get basicOffsetTable(): Uint8Array | undefined {
    return this.items >= 2 || (this.items === 1 && this.remaining === 0) ? Buffer.concat(this.botParts) : undefined;
  }

  /** Continues from `offset`, at or before the pixel data value: the bytes before the value need not be fed. */
  seek(offset: number): void {
    if (offset < this.at || offset > (this.layout?.valueOffset ?? 0)) throw new Error('seek outside the bytes before the pixel data');
    this.at = offset;
  }

  /** Passes over `n` bytes (at most `skippable`) as if fed. */
  skip(n: number): void {
    if (n > this.skippable) throw new Error('skip past what may be skipped');
    this.at += n;
    this.remaining -= n;
    if (n > 0 && this.remaining === 0) this.endItem();
  }

  /**
   * The error the streamed value meets (shared/dicom/parser.ts) when the file ends where the next
   * byte would be fed: inside a fragment, or inside (or at) an item header.
   */
  endsHere(): PipelineError {
    return this.remaining > 0 ? endsInsidePixelData(this.remaining) : endsInsideElement(8 - this.headFill);
  }

  /** The item whose value starts at `valueAt` begins: its header is in `head`. */
  private startItem(valueAt: number): void {
    this.headFill = 0;
    const le = this.layout!.littleEndian;
    const tag = (((le ? this.head.readUInt16LE(0) : this.head.readUInt16BE(0)) << 16) | (le ? this.head.readUInt16LE(2) : this.head.readUInt16BE(2))) >>> 0;
    const length = le ? this.head.readUInt32LE(4) : this.head.readUInt32BE(4);
    if (tag === SEQUENCE_DELIMITER) {
      this.ended = true;
      return;
    }
    if (tag !== ITEM || length === 0xffffffff) throw malformed('an encapsulated item is not a fragment of defined length');
    if (this.sourceSize !== undefined && valueAt + length > this.sourceSize) throw fragmentPastEnd(length);
    this.items++;
    this.sniffFill = 0;
    if (this.items >= 2) this.lengths.push(length);
    this.remaining = length;
    if (length === 0) this.endItem();
  }

  private keep(bytes: Uint8Array): void {
    if (this.items === 1) {
      this.botParts.push(Buffer.from(bytes));
      return;
    }
    if (this.sniffFill < SNIFF_BYTES) {
      const n = Math.min(SNIFF_BYTES - this.sniffFill, bytes.length);
      this.sniff.set(bytes.subarray(0, n), this.sniffFill);
      this.sniffFill += n;
    }
  }

  private endItem(): void {
    if (this.items >= 2) this.imageStarts.push(startsImage(this.sniff.subarray(0, this.sniffFill)));
  }

  /** The index of what was fed. Throws DICOM_MALFORMED when the frames cannot be located. */
  result(): CompactFrameIndex {
    const l = this.layout;
    if (!l) return { kind: 'none' };
    if (l.length !== undefined) return nativeFrameIndex(l);
    if (!this.ended) throw malformed('the copy ended inside its encapsulated pixel data');
    return encapsulatedFrameIndex(l, { bot: Buffer.concat(this.botParts), lengths: this.lengths, imageStarts: this.imageStarts });
  }
}

/**
 * Passes a research copy's chunks on unchanged while `builder` watches them. A failure of the
 * index never fails the copy: it is kept in `failure` and the watching stops.
 */
export async function* watched(chunks: AsyncIterable<Uint8Array>, builder: FrameIndexBuilder, state: { failure?: unknown }): AsyncGenerator<Uint8Array> {
  for await (const chunk of chunks) {
    if (state.failure === undefined) {
      try {
        builder.feed(chunk);
      } catch (e) {
        state.failure = e;
      }
    }
    yield chunk;
  }
}

/** Bytes per ranged read while item headers are walked: several small fragments per request. */
const WALK_WINDOW = 64 * 1024;
/** After a fragment longer than this, only the next item header and its first bytes are read. */
const SMALL_FRAGMENT = 16 * 1024;
/** Bytes of the first ranged read while the header is parsed; each next read doubles, up to HEADER_WINDOW_MAX. */
const HEADER_WINDOW = 64 * 1024;
const HEADER_WINDOW_MAX = 4 * 1024 * 1024;

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of chunks) parts.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  return Buffer.concat(parts);
}

/**
 * The copy as consecutive ranged reads, each made only when the parser asks for more, each
 * twice the last (a multi-frame header of megabytes takes a few requests, a small one one).
 */
async function* windows(research: ResearchStore, blobName: string, size: number, abortSignal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
  for (let o = 0, n = HEADER_WINDOW; o < size; o += n, n = Math.min(2 * n, HEADER_WINDOW_MAX)) {
    yield await collect(await research.readRange(blobName, o, Math.min(n, size - o), { abortSignal }));
  }
}

/**
 * The frame index of a copy already written, from ranged reads: the header through the
 * project's parser, then the item headers of encapsulated pixel data, a window at a time
 * (several small fragments per read; past a large fragment, one small read of the next item
 * header), or, when the basic offset table names one fragment per frame, every item header at
 * once (HEADER_READS_IN_FLIGHT reads in flight). Never the pixel data in memory. Throws NOT_FOUND when the copy is gone, SERVICE_*
 * on faults, DICOM_* when the copy cannot be parsed or its frames located.
 */
export async function buildFrameIndexFromCopy(
  research: ResearchStore,
  blobName: string,
  size: number,
  options: { maxHeaderBytes?: number; abortSignal?: AbortSignal } = {},
): Promise<CompactFrameIndex> {
  const reader = new ByteReader(windows(research, blobName, size, options.abortSignal));
  let layout: PixelLayout | undefined;
  try {
    const header = await readHeader(reader, { maxHeaderBytes: options.maxHeaderBytes ?? 64 * 1024 * 1024, totalSize: size });
    layout = pixelLayout(header.dataset, header.encoding, header.transferSyntaxUid, header.pixelData, reader.position);
  } finally {
    await reader.close();
  }
  const builder = new FrameIndexBuilder(layout);
  if (builder.done) return builder.result();
  builder.seek(layout!.valueOffset);
  let window = WALK_WINDOW;
  let tried = false;
  while (!builder.done) {
    const bot = tried ? undefined : builder.basicOffsetTable;
    if (bot) {
      tried = true;
      const byTable = await fragmentsByOffsetTable(research, blobName, size, layout!, bot, options.abortSignal);
      if (byTable) return encapsulatedFrameIndex(layout!, byTable);
    }
    const at = builder.offset;
    if (at >= size) throw malformed('the copy ended inside its encapsulated pixel data');
    builder.feed(await collect(await research.readRange(blobName, at, Math.min(window, size - at), { abortSignal: options.abortSignal })));
    const rest = builder.skippable;
    window = rest > SMALL_FRAGMENT ? 8 + SNIFF_BYTES : WALK_WINDOW;
    builder.skip(rest);
  }
  return builder.result();
}

/** Item header reads in flight at once when a basic offset table says where they are. */
const HEADER_READS_IN_FLIGHT = 16;

/**
 * One fragment per frame where the basic offset table says, read concurrently (a header and
 * the fragment's first bytes each): when the table holds one offset per frame and each item it
 * names is one fragment reaching the next (the last one the sequence delimiter), the fragments
 * are known without walking them one after another. Undefined when the table does not tell.
 */
async function fragmentsByOffsetTable(
  research: ResearchStore,
  blobName: string,
  size: number,
  l: PixelLayout,
  bot: Uint8Array,
  abortSignal: AbortSignal | undefined,
): Promise<Fragments | undefined> {
  const offsets = basicOffsets(bot);
  // Offsets count from the first fragment's item header, after the table's own item.
  const first = l.valueOffset + 8 + bot.length;
  if (!offsets || offsets.length !== l.numberOfFrames || offsets[0] !== 0 || offsets.some((o, i) => i > 0 && o <= offsets[i - 1]!)) return undefined;
  const heads: Buffer[] = new Array<Buffer>(offsets.length);
  let next = 0;
  const readHead = async (at: number) => (at + 8 > size ? Buffer.alloc(0) : collect(await research.readRange(blobName, at, Math.min(8 + SNIFF_BYTES, size - at), { abortSignal })));
  await Promise.all(Array.from({ length: Math.min(HEADER_READS_IN_FLIGHT, offsets.length) }, async () => {
    for (let i = next++; i < offsets.length; i = next++) heads[i] = await readHead(first + offsets[i]!);
  }));
  const le = l.littleEndian;
  const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const tagOf = (b: Buffer) => ((u16(b, 0) << 16) | u16(b, 2)) >>> 0;
  const lengths: number[] = [];
  for (const [i, h] of heads.entries()) {
    if (h.length < 8 || tagOf(h) !== ITEM) return undefined;
    const length = u32(h, 4);
    if (i + 1 < offsets.length && offsets[i]! + 8 + length !== offsets[i + 1]) return undefined;
    lengths.push(length);
  }
  const end = await readHead(first + offsets[offsets.length - 1]! + 8 + lengths[lengths.length - 1]!);
  if (end.length < 8 || tagOf(end) !== SEQUENCE_DELIMITER) return undefined;
  return { bot, lengths, imageStarts: heads.map((h) => startsImage(h.subarray(8))) };
}

/** What the ingestion's prepared instance tells of its output (shared/ingest/deidentifyInstance.ts). */
export interface PreparedOutput {
  dataset: DicomDataset;
  enc: Encoding;
  outputTs: string;
  header: { pixelData?: PixelDataHeader };
  pixelValueOffset?: number;
  output(): AsyncGenerator<Uint8Array>;
}

/** A research copy's output watched for its frame index as it is written. */
export interface WatchedOutput {
  /** The output, unchanged; call once. */
  output(): AsyncGenerator<Uint8Array>;
  /** Once the output was read to its end: the index, or why there is none. */
  result(): { index: CompactFrameIndex } | { failure: unknown };
}

/** Watches the output of a prepared instance: its frame index comes at no extra read. */
export function watchFrames(prepared: PreparedOutput): WatchedOutput {
  const layout = pixelLayout(prepared.dataset, prepared.enc, prepared.outputTs, prepared.header.pixelData, prepared.pixelValueOffset ?? 0);
  const builder = new FrameIndexBuilder(layout);
  const state: { failure?: unknown } = {};
  return {
    output: () => watched(prepared.output(), builder, state),
    result: () => {
      if (state.failure !== undefined) return { failure: state.failure };
      try {
        return { index: builder.result() };
      } catch (e) {
        return { failure: e };
      }
    },
  };
}
