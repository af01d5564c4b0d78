/**
 * Burned-in text on compressed (encapsulated) pixel data (issue 17): where each frame's
 * fragments lie in the source, the sampled frames read by range and decoded for OCR, and the
 * research copy written losslessly, frame by frame, as the source streams: each frame decoded,
 * its boxes blacked out, and encoded in RLE Lossless (never lossy over lossy). Memory holds one
 * frame (its fragments, its native bytes, its RLE bytes), whatever the number of frames.
 *
 * The copy is encapsulated like its source: an empty basic offset table, then one fragment per
 * frame, so its frame index (frameIndexBuilder.ts) is one fragment per frame.
 */
import { endsInsidePixelData } from '../dicom/byteReader';
import { asciiValue, DicomDataset, encodeAsciiValue, Encoding } from '../dicom/dataset';
import type { PixelDataHeader } from '../dicom/parser';
import type { PixelGeometry } from '../dicom/pixels/blackout';
import { DECODABLE, decodeFrame, FrameDecodeError, RLE_LOSSLESS } from '../dicom/pixels/codecs';
import type { Box } from '../dicom/pixels/regions';
import { encodeRleFrame } from '../dicom/pixels/rle';
import { Tags } from '../dicom/tags';
import { ErrorCodes, PipelineError } from '../errors';
import type { ByteRange } from '../retrieve/frameIndex';
import { expandFrameIndex, FrameIndexBuilder, pixelLayout } from '../retrieve/frameIndexBuilder';
import { redactedFrame, SampledFrames, sampleFrameIndexes, SourceRangeReader } from './pixelText';

/** The photometric interpretation of the frames once decoded, as the copy's header will say it. */
export function decodedPhotometric(transferSyntaxUid: string, photometric: string, samplesPerPixel: number): string {
  if (samplesPerPixel !== 3) return photometric;
  // libjpeg-turbo gives colour JPEG as RGB (YCbCr, 4:2:2 or 4:2:0 included, converted back).
  if (transferSyntaxUid === '1.2.840.10008.1.2.4.50' || transferSyntaxUid === '1.2.840.10008.1.2.4.51') return 'RGB';
  // OpenJPEG undoes the reversible (RCT) and irreversible (ICT) colour transforms.
  if ((transferSyntaxUid === '1.2.840.10008.1.2.4.90' || transferSyntaxUid === '1.2.840.10008.1.2.4.91') && (photometric === 'YBR_RCT' || photometric === 'YBR_ICT')) return 'RGB';
  return photometric;
}

/**
 * The geometry of the decoded frames (interleaved, `frameBytes` each), or why the compressed
 * pixel data cannot be decoded here (a category, never a value).
 */
export function decodedGeometry(ds: DicomDataset, littleEndian: boolean, transferSyntaxUid: string): { geometry: PixelGeometry; photometric: string } | { reason: string } {
  const codec = DECODABLE.get(transferSyntaxUid);
  if (!codec) return { reason: `compressed pixel data in transfer syntax ${transferSyntaxUid} (no decoder)` };
  const u16 = (tag: number) => {
    const v = ds.get(tag)?.value;
    return v && v.length >= 2 ? (littleEndian ? v[0]! | (v[1]! << 8) : (v[0]! << 8) | v[1]!) : undefined;
  };
  const rows = u16(Tags.Rows) ?? 0;
  const columns = u16(Tags.Columns) ?? 0;
  const samplesPerPixel = u16(Tags.SamplesPerPixel) ?? 1;
  const bitsAllocated = u16(Tags.BitsAllocated) ?? 0;
  if (rows <= 0 || columns <= 0) return { reason: 'Rows or Columns missing' };
  if (bitsAllocated !== 8 && bitsAllocated !== 16) return { reason: `${codec.name} pixel data with BitsAllocated other than 8 or 16` };
  if (samplesPerPixel !== 1 && samplesPerPixel !== 3) return { reason: 'samples per pixel other than 1 or 3' };
  const framesText = asciiValue(ds.get(Tags.NumberOfFrames));
  const frames = framesText === undefined || framesText === '' ? 1 : Number(framesText);
  if (!Number.isInteger(frames) || frames < 1) return { reason: 'Number of Frames not a positive integer' };
  const bytesPerSample = bitsAllocated / 8;
  return { geometry: { rows, columns, samplesPerPixel, bytesPerSample, planar: false, frames, frameBytes: rows * columns * samplesPerPixel * bytesPerSample }, photometric: asciiValue(ds.get(Tags.PhotometricInterpretation))?.toUpperCase() ?? '' };
}

/** Where each frame's fragments lie in the source (absolute [offset, length] ranges), from its item headers. */
export interface SourceFrames {
  frames: ByteRange[][];
  /** Index of each frame's first fragment, in the order the fragments come. */
  frameStarts: number[];
  fragments: number;
}

/** Bytes per ranged read while item headers are walked; past a large fragment only its successor's header is read. */
const WALK_WINDOW = 64 * 1024;
const SMALL_FRAGMENT = 16 * 1024;

/**
 * The frames of the source's encapsulated pixel data whose value starts at `valueOffset`, by
 * ranged reads of its item headers (never the fragments), mapped to frames as the frame index
 * maps a copy's. Throws DICOM_MALFORMED when the frames cannot be told apart.
 */
export async function locateSourceFrames(read: SourceRangeReader, ds: DicomDataset, enc: Encoding, transferSyntaxUid: string, pixel: PixelDataHeader, valueOffset: number, totalSize: number | undefined): Promise<SourceFrames> {
  const layout = pixelLayout(ds, enc, transferSyntaxUid, pixel, valueOffset);
  const builder = new FrameIndexBuilder(layout, totalSize);
  builder.seek(valueOffset);
  let window = WALK_WINDOW;
  while (!builder.done) {
    const at = builder.offset;
    const length = totalSize === undefined ? window : Math.min(window, totalSize - at);
    const bytes = length > 0 ? await read(at, length) : new Uint8Array(0);
    // The file ends inside its pixel data: it fails as its streamed value would.
    if (bytes.length === 0) throw builder.endsHere();
    builder.feed(bytes);
    const rest = builder.skippable;
    window = rest > SMALL_FRAGMENT ? 20 : WALK_WINDOW;
    builder.skip(rest);
  }
  const compact = builder.result();
  if (compact.kind !== 'encapsulated') throw new PipelineError(ErrorCodes.DICOM_MALFORMED, 'the pixel data is not encapsulated');
  const index = expandFrameIndex(compact);
  if (index.kind !== 'encapsulated') throw new PipelineError(ErrorCodes.DICOM_MALFORMED, 'the pixel data is not encapsulated');
  const frameStarts = compact.frameStarts ? [...compact.frameStarts] : index.frames.map((_, i) => i);
  return { frames: index.frames, frameStarts, fragments: compact.lengths.length };
}

/** One frame's fragments joined, read by range. */
async function readFrame(read: SourceRangeReader, ranges: readonly ByteRange[]): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for (const [offset, length] of ranges) {
    const part = await read(offset, length);
    // Fragments past the end failed as the located frames were walked; this is the range cut short all the same.
    if (part.length !== length) throw endsInsidePixelData(length - part.length);
    parts.push(part);
  }
  return Buffer.concat(parts);
}

/** Why a frame could not be decoded: the hold's detail (frame number and category only). */
export class UndecodableFrame extends Error {
  override name = 'UndecodableFrame';
  constructor(readonly frame: number, cause: unknown) {
    super(`frame ${frame + 1} of the compressed pixel data could not be decoded (${cause instanceof FrameDecodeError ? cause.message : 'decoder failure'})`, { cause });
  }
}

/**
 * The sampled frames of compressed pixel data, read by range and decoded to native bytes of
 * geometry `g`. Throws UndecodableFrame for a frame that does not decode.
 */
export async function readSampledCompressedFrames(read: SourceRangeReader, source: SourceFrames, transferSyntaxUid: string, g: PixelGeometry, count: number, sourcePhotometric: string): Promise<SampledFrames> {
  const indexes = sampleFrameIndexes(g.frames, count);
  const bytes: Uint8Array[] = [];
  for (const i of indexes) {
    const data = await readFrame(read, source.frames[i] ?? []);
    try {
      bytes.push(await decodeFrame(transferSyntaxUid, data, { ...g, photometric: sourcePhotometric }));
    } catch (e) {
      throw new UndecodableFrame(i, e);
    }
  }
  return { indexes, bytes };
}

/** A redacted native frame as the copy will hold it: RLE encoded, then decoded again (what a reader of the copy gets). */
export async function roundTripRle(frame: Uint8Array, g: PixelGeometry): Promise<Buffer> {
  return decodeFrame(RLE_LOSSLESS, encodeRleFrame(frame, g), g);
}

/**
 * The header of the copy of a transcoded source: it describes the decoded frames. Photometric
 * interpretation as decoded (YBR_FULL_422 from JPEG, YBR_ICT and YBR_RCT from JPEG 2000 are
 * RGB), colour by pixel, offset tables of the source dropped (they point at its fragments),
 * and a lossy source stays marked lossy (LossyImageCompression 01, its method kept or named):
 * the copy is lossless over what the source held, and says the source was not.
 */
export function fixUpTranscodedHeader(ds: DicomDataset, transferSyntaxUid: string, photometric: string, g: PixelGeometry, littleEndian: boolean): void {
  const text = (tag: number, vr: string, v: string) => ds.set(tag, { tag, vr, value: encodeAsciiValue(v, vr) });
  text(Tags.PhotometricInterpretation, 'CS', photometric);
  if (g.samplesPerPixel > 1) {
    const v = Buffer.alloc(2);
    if (littleEndian) v.writeUInt16LE(0);
    else v.writeUInt16BE(0);
    ds.set(Tags.PlanarConfiguration, { tag: Tags.PlanarConfiguration, vr: 'US', value: v });
  }
  ds.delete(Tags.ExtendedOffsetTable);
  ds.delete(Tags.ExtendedOffsetTableLengths);
  const codec = DECODABLE.get(transferSyntaxUid);
  const lossy = codec?.lossy === true || asciiValue(ds.get(Tags.LossyImageCompression)) === '01';
  if (lossy) {
    text(Tags.LossyImageCompression, 'CS', '01');
    if (!ds.has(Tags.LossyImageCompressionMethod) && codec?.method) text(Tags.LossyImageCompressionMethod, 'CS', codec.method);
  }
}

/** What the writer needs to transcode the pixel data of a source as it streams. */
export interface TranscodePlan {
  transferSyntaxUid: string;
  geometry: PixelGeometry;
  boxes: readonly Box[];
  source: SourceFrames;
  littleEndian: boolean;
  /** The source's PhotometricInterpretation (what its frames are labelled as before decoding). */
  sourcePhotometric: string;
}

const ITEM = 0xfffee000;
const SEQUENCE_DELIMITER = 0xfffee0dd;

function itemHeader(tag: number, length: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(tag >>> 16, 0);
  b.writeUInt16LE(tag & 0xffff, 2);
  b.writeUInt32LE(length, 4);
  return b;
}

/**
 * The encapsulated pixel data value of the copy, from the source's value as it streams (item
 * headers and fragments, through the sequence delimiter): per frame, its fragments gathered,
 * decoded, the boxes blacked out, RLE encoded. Throws PipelineError DEID_BURNED_IN_ANNOTATION
 * when a frame does not decode (the file is held, not published with a frame left as it was),
 * DICOM_MALFORMED when the fragments differ from those located by range.
 */
export async function* transcodeToRle(chunks: AsyncIterable<Uint8Array>, plan: TranscodePlan, hold: (why: string, cause?: unknown) => PipelineError): AsyncGenerator<Uint8Array> {
  const le = plan.littleEndian;
  const starts = new Set(plan.source.frameStarts);
  const head = Buffer.alloc(8);
  let headFill = 0;
  let remaining = 0;
  let items = 0;
  let frame = -1;
  let parts: Buffer[] = [];
  yield itemHeader(ITEM, 0);
  const finish = async function* (): AsyncGenerator<Uint8Array> {
    if (frame < 0) return;
    let native: Buffer;
    try {
      native = await decodeFrame(plan.transferSyntaxUid, Buffer.concat(parts), { ...plan.geometry, photometric: plan.sourcePhotometric });
    } catch (e) {
      throw hold(new UndecodableFrame(frame, e).message, e);
    }
    parts = [];
    const redacted = plan.boxes.length > 0 ? await redactedFrame(native, plan.geometry, plan.boxes) : native;
    const rle = encodeRleFrame(redacted, plan.geometry);
    yield itemHeader(ITEM, rle.length);
    yield rle;
  };
  for await (const chunk of chunks) {
    let o = 0;
    while (o < chunk.length) {
      if (remaining > 0) {
        const n = Math.min(remaining, chunk.length - o);
        if (items >= 2) parts.push(Buffer.from(chunk.subarray(o, o + n)));
        remaining -= n;
        o += n;
        continue;
      }
      const n = Math.min(8 - headFill, chunk.length - o);
      head.set(chunk.subarray(o, o + n), headFill);
      headFill += n;
      o += n;
      if (headFill < 8) continue;
      headFill = 0;
      const tag = (((le ? head.readUInt16LE(0) : head.readUInt16BE(0)) << 16) | (le ? head.readUInt16LE(2) : head.readUInt16BE(2))) >>> 0;
      const length = le ? head.readUInt32LE(4) : head.readUInt32BE(4);
      if (tag === SEQUENCE_DELIMITER) {
        if (items - 1 !== plan.source.fragments) throw new PipelineError(ErrorCodes.DICOM_MALFORMED, 'the pixel data fragments differ from those located by range');
        yield* finish();
        if (frame + 1 !== plan.geometry.frames) throw new PipelineError(ErrorCodes.DICOM_MALFORMED, 'the pixel data holds another number of frames than located');
        yield itemHeader(SEQUENCE_DELIMITER, 0);
        return;
      }
      if (tag !== ITEM) throw new PipelineError(ErrorCodes.DICOM_MALFORMED, 'encapsulated pixel data holds something other than a fragment');
      items++;
      // Item 1 is the basic offset table; fragment k is item k + 2.
      if (items >= 2 && starts.has(items - 2)) {
        yield* finish();
        frame++;
      }
      remaining = length;
    }
  }
  throw new PipelineError(ErrorCodes.DICOM_MALFORMED, 'the pixel data ended before its sequence delimiter');
}
