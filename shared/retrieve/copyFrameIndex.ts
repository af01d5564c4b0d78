/**
 * A frame index read from the research copy itself, kept in memory: the FrameIndexSource the
 * retrieve uses until the index built at ingestion (frame-index work of issue 14) takes its
 * place, and for tests. Native pixel data needs the header only; encapsulated pixel data is
 * walked item by item (one 8-byte ranged read per item header), so its cost grows with the
 * number of fragments, not with the bytes.
 */
import { ByteReader } from '../dicom/byteReader';
import { type DicomDataset, uintValue } from '../dicom/dataset';
import type { HeaderLimits } from '../dicom/limits';
import { Tags } from '../dicom/tags';
import { ErrorCodes, PipelineError } from '../errors';
import { type CopyHeader, readCopyHeader, type ResearchReader } from './copyHeader';
import type { ByteRange, FrameIndex, FrameIndexSource } from './frameIndex';

const ITEM = 0xfffee000;
const SEQUENCE_DELIMITER = 0xfffee0dd;

function intString(ds: DicomDataset, tag: number): number | undefined {
  const v = ds.get(tag)?.value;
  if (!v) return undefined;
  const n = Number(Buffer.from(v).toString('latin1').replace(/[\0 ]/g, ''));
  return Number.isInteger(n) ? n : undefined;
}

/** The frames of a native pixel data value, from the image pixel module. */
function nativeIndex(header: CopyHeader, valueOffset: number, valueLength: number): FrameIndex {
  const ds = header.dataset;
  const le = header.littleEndian;
  const count = intString(ds, Tags.NumberOfFrames) ?? 1;
  const rows = uintValue(ds.get(Tags.Rows), le) ?? 0;
  const columns = uintValue(ds.get(Tags.Columns), le) ?? 0;
  const samples = uintValue(ds.get(Tags.SamplesPerPixel), le) ?? 1;
  const bits = uintValue(ds.get(Tags.BitsAllocated), le) ?? 0;
  const frameBits = rows * columns * samples * bits;
  // Frames of 1-bit data need not start on a byte: such a frame cannot be one byte range.
  if (count < 1 || frameBits === 0 || frameBits % 8 !== 0 || (frameBits / 8) * count > valueLength) {
    throw new PipelineError(ErrorCodes.DICOM_MALFORMED, 'the native pixel data does not hold the frames the image pixel module describes');
  }
  return { kind: 'native', count, offset: valueOffset, frameLength: frameBits / 8 };
}

/** 32- or 64-bit little-endian values of a binary element (the offset tables). */
function tableOf(ds: DicomDataset, tag: number, bytes: 4 | 8, le: boolean): number[] | undefined {
  const v = ds.get(tag)?.value;
  if (!v || v.length === 0) return undefined;
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  const out: number[] = [];
  for (let o = 0; o + bytes <= v.length; o += bytes) out.push(bytes === 4 ? dv.getUint32(o, le) : Number(dv.getBigUint64(o, le)));
  return out;
}

interface Fragment {
  /** Offset of the item header from the first fragment's item header (what the offset tables count). */
  relative: number;
  range: ByteRange;
}

async function itemHeader(research: ResearchReader, blob: string, offset: number, le: boolean): Promise<{ tag: number; length: number }> {
  const reader = new ByteReader(await research.readRange(blob, offset, 8));
  try {
    const h = await reader.read(8);
    const group = le ? h.readUInt16LE(0) : h.readUInt16BE(0);
    const element = le ? h.readUInt16LE(2) : h.readUInt16BE(2);
    return { tag: ((group << 16) | element) >>> 0, length: le ? h.readUInt32LE(4) : h.readUInt32BE(4) };
  } finally {
    await reader.close();
  }
}

/** The frames of an encapsulated pixel data value (PS3.5 A.4), by its offset tables or its fragment count. */
async function encapsulatedIndex(research: ResearchReader, blob: string, header: CopyHeader, valueOffset: number): Promise<FrameIndex> {
  const le = header.littleEndian;
  const count = intString(header.dataset, Tags.NumberOfFrames) ?? 1;
  const bot = await itemHeader(research, blob, valueOffset, le);
  if (bot.tag !== ITEM) throw new PipelineError(ErrorCodes.DICOM_MALFORMED, 'encapsulated pixel data does not start with its basic offset table item');
  let basicOffsets: number[] | undefined;
  if (bot.length > 0) {
    const reader = new ByteReader(await research.readRange(blob, valueOffset + 8, bot.length));
    try {
      const table = await reader.read(bot.length);
      basicOffsets = [];
      for (let o = 0; o + 4 <= table.length; o += 4) basicOffsets.push(le ? table.readUInt32LE(o) : table.readUInt32BE(o));
    } finally {
      await reader.close();
    }
  }
  const first = valueOffset + 8 + bot.length;
  const fragments: Fragment[] = [];
  for (let at = first; ;) {
    const item = await itemHeader(research, blob, at, le);
    if (item.tag === SEQUENCE_DELIMITER) break;
    if (item.tag !== ITEM || item.length === 0xffffffff) throw new PipelineError(ErrorCodes.DICOM_MALFORMED, 'encapsulated pixel data holds something other than fragment items');
    fragments.push({ relative: at - first, range: [at + 8, item.length] });
    at += 8 + item.length;
  }
  return { kind: 'encapsulated', count, frames: framesOf(fragments, count, basicOffsets ?? tableOf(header.dataset, Tags.ExtendedOffsetTable, 8, le)) };
}

/** Groups fragments into frames: one frame takes all; else by an offset table; else one fragment per frame. */
export function framesOf(fragments: readonly Fragment[], count: number, offsets: number[] | undefined): ByteRange[][] {
  if (count === 1) return [fragments.map((f) => f.range)];
  if (offsets && offsets.length === count) {
    return offsets.map((start, i) => {
      const end = offsets[i + 1] ?? Infinity;
      return fragments.filter((f) => f.relative >= start && f.relative < end).map((f) => f.range);
    });
  }
  if (fragments.length === count) return fragments.map((f) => [f.range]);
  throw new PipelineError(ErrorCodes.DICOM_MALFORMED, 'the frames of this encapsulated pixel data cannot be told apart (no offset table, fragments and frames differ in number)');
}

/** Builds the frame index of a copy from its header (and item headers). Same throws as readCopyHeader, DICOM_MALFORMED when the frames cannot be located. */
export async function indexFromCopy(research: ResearchReader, instance: { researchBlob: string }, limits: HeaderLimits, header?: CopyHeader): Promise<FrameIndex> {
  const h = header ?? (await readCopyHeader(research, instance, limits));
  const pixel = h.pixelData;
  if (!pixel || pixel.tag !== Tags.PixelData) return { kind: 'none' };
  if (pixel.length !== undefined) return nativeIndex(h, pixel.valueOffset, pixel.length);
  return encapsulatedIndex(research, instance.researchBlob, h, pixel.valueOffset);
}

/**
 * FrameIndexSource over the copies, with the last `maxEntries` indexes kept in memory (a
 * research copy is replaced under a new catalog version only by a re-ingestion, which a
 * process restart or the cache's turnover picks up; the ingestion-built index has no such lag).
 */
export class CopyFrameIndexSource implements FrameIndexSource {
  private readonly cache = new Map<string, Promise<FrameIndex>>();

  constructor(
    private readonly research: ResearchReader,
    private readonly limits: HeaderLimits,
    private readonly maxEntries = 1000,
  ) {}

  frameIndex(instance: { studyInstanceUid: string; sopInstanceUid: string; researchBlob: string }): Promise<FrameIndex> {
    const key = instance.researchBlob;
    let index = this.cache.get(key);
    if (!index) {
      index = indexFromCopy(this.research, { researchBlob: instance.researchBlob }, this.limits);
      // A failure is not kept: the next request tries again.
      index.catch(() => this.cache.delete(key));
      this.cache.set(key, index);
      if (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value as string);
    }
    return index;
  }
}
