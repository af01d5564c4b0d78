/**
 * DICOM RLE Lossless (PS3.5 Annex G), one frame at a time: the decoder for RLE sources, and
 * the encoder the research copy of a redacted compressed source is written with. RLE is
 * lossless, simple enough to own (no codec to load), and keeps the copy encapsulated: one
 * fragment per frame, which is what the frame index reads (frameIndexBuilder.ts).
 *
 * A frame is a 64-byte header (the number of segments, then 15 offsets from the frame's
 * start) and one segment per byte of each sample: sample by sample, most significant byte
 * first, each a PackBits run over the frame's pixels, row by row (a run never crosses a row,
 * G.3.1), padded to an even length.
 *
 * Native frames here are interleaved (colour by pixel) and little endian: the layout the
 * decoders give and the redaction works on.
 */

/** The layout of a native frame: what RLE needs to split it into segments and back. */
export interface RleFrameLayout {
  rows: number;
  columns: number;
  samplesPerPixel: number;
  /** BitsAllocated / 8. */
  bytesPerSample: number;
}

const HEADER_BYTES = 64;
const MAX_SEGMENTS = 15;

/** Thrown for RLE data that does not decode to the frame the header describes. */
export class RleError extends Error {
  override name = 'RleError';
}

/** Where a segment is written: a buffer large enough for the worst case, and how much of it is used. */
interface SegmentWriter {
  bytes: Uint8Array;
  length: number;
}

/** PackBits of one row's bytes (`row[from..to)`, every `stride`-th byte of the frame), appended to `out`. */
function packRow(frame: Uint8Array, from: number, count: number, stride: number, out: SegmentWriter): void {
  const at = (k: number) => frame[from + k * stride] ?? 0;
  const b = out.bytes;
  let o = out.length;
  let i = 0;
  while (i < count) {
    // A replicate run of 2+ bytes (up to 128).
    const v = at(i);
    let run = 1;
    while (i + run < count && run < 128 && at(i + run) === v) run++;
    if (run >= 2) {
      b[o++] = 257 - run;
      b[o++] = v;
      i += run;
      continue;
    }
    // A literal run (up to 128) until two equal bytes start a replicate run.
    const start = i;
    while (i < count && i - start < 128 && !(i + 1 < count && at(i + 1) === at(i))) i++;
    if (i === start) i++;
    b[o++] = i - start - 1;
    for (let k = start; k < i; k++) b[o++] = at(k);
  }
  out.length = o;
}

/** One native frame (interleaved, little endian) as an RLE Lossless frame. */
export function encodeRleFrame(frame: Uint8Array, g: RleFrameLayout): Buffer {
  const pixels = g.rows * g.columns;
  const segments = g.samplesPerPixel * g.bytesPerSample;
  if (segments > MAX_SEGMENTS) throw new RleError(`RLE holds at most ${MAX_SEGMENTS} segments, not ${segments}`);
  if (frame.length < pixels * segments) throw new RleError('frame shorter than its layout');
  const encoded: Buffer[] = [];
  // Worst case: a header byte per 128 literal bytes, or 2 bytes per pair, per row; plus padding.
  const worst = pixels + g.rows * (Math.ceil(g.columns / 128) + Math.ceil(g.columns / 2)) + 1;
  for (let s = 0; s < g.samplesPerPixel; s++) {
    for (let k = 0; k < g.bytesPerSample; k++) {
      // Most significant byte first: in a little-endian sample, that is the last byte.
      const byteInPixel = s * g.bytesPerSample + (g.bytesPerSample - 1 - k);
      const out: SegmentWriter = { bytes: new Uint8Array(worst), length: 0 };
      for (let y = 0; y < g.rows; y++) packRow(frame, y * g.columns * segments + byteInPixel, g.columns, segments, out);
      if (out.length % 2 === 1) out.bytes[out.length++] = 0;
      encoded.push(Buffer.from(out.bytes.buffer, 0, out.length));
    }
  }
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32LE(segments, 0);
  let offset = HEADER_BYTES;
  encoded.forEach((seg, i) => {
    header.writeUInt32LE(offset, 4 + 4 * i);
    offset += seg.length;
  });
  return Buffer.concat([header, ...encoded]);
}

/** Unpacks one PackBits segment into `length` bytes; throws RleError when it is short. */
function unpackSegment(data: Uint8Array, start: number, end: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let o = 0;
  let i = start;
  while (o < length && i < end) {
    const n = data[i++] ?? 0;
    if (n < 128) {
      const count = Math.min(n + 1, length - o, end - i);
      out.set(data.subarray(i, i + count), o);
      o += count;
      i += n + 1;
    } else if (n > 128) {
      const count = Math.min(257 - n, length - o);
      out.fill(data[i] ?? 0, o, o + count);
      o += count;
      i++;
    }
  }
  if (o < length) throw new RleError('an RLE segment ends before its frame does');
  return out;
}

/** One RLE Lossless frame as a native frame (interleaved, little endian). Throws RleError. */
export function decodeRleFrame(data: Uint8Array, g: RleFrameLayout): Buffer {
  if (data.length < HEADER_BYTES) throw new RleError('RLE frame shorter than its header');
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const segments = view.getUint32(0, true);
  const expected = g.samplesPerPixel * g.bytesPerSample;
  if (segments !== expected) throw new RleError(`RLE frame has ${segments} segments where the header needs ${expected}`);
  const offsets = Array.from({ length: segments }, (_, i) => view.getUint32(4 + 4 * i, true));
  const pixels = g.rows * g.columns;
  const frame = Buffer.alloc(pixels * expected);
  for (let seg = 0; seg < segments; seg++) {
    const start = offsets[seg] ?? 0;
    const end = seg + 1 < segments ? (offsets[seg + 1] ?? 0) : data.length;
    if (start < HEADER_BYTES || end > data.length || end < start) throw new RleError('an RLE segment offset lies outside the frame');
    const bytes = unpackSegment(data, start, end, pixels);
    const s = Math.floor(seg / g.bytesPerSample);
    const k = seg % g.bytesPerSample;
    const byteInPixel = s * g.bytesPerSample + (g.bytesPerSample - 1 - k);
    for (let p = 0; p < pixels; p++) frame[p * expected + byteInPixel] = bytes[p] ?? 0;
  }
  return frame;
}
