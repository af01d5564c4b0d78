/**
 * Blacking out rectangles of native (uncompressed) pixel data as it streams past: each
 * chunk's byte offset is mapped to frame, plane, row and column, and the bytes under a box
 * are set to zero. Nothing larger than one chunk is held, whatever the frame size.
 *
 * Zero is the lowest stored value, not necessarily black on screen (MONOCHROME1, signed
 * pixels, YBR chroma, a palette): what matters is that the text under the box is gone.
 */
import { asciiValue, DicomDataset, uintValue } from '../dataset';
import type { PixelDataHeader } from '../parser';
import { Tags } from '../tags';
import type { Box } from './regions';

/** The layout of native pixel data, as the attributes of the Image Pixel module describe it. */
export interface PixelGeometry {
  rows: number;
  columns: number;
  samplesPerPixel: number;
  /** BitsAllocated / 8. */
  bytesPerSample: number;
  /** PlanarConfiguration 1: each colour plane of a frame in turn (R…R G…G B…B). */
  planar: boolean;
  frames: number;
  /** rows × columns × samplesPerPixel × bytesPerSample. */
  frameBytes: number;
}

/**
 * The layout of the pixel data that follows this header, or why its bytes cannot be mapped
 * to pixels (the reason names a category, never a value).
 */
export function pixelGeometry(ds: DicomDataset, littleEndian: boolean, pixel: PixelDataHeader): { geometry: PixelGeometry } | { reason: string } {
  if (pixel.length === undefined) return { reason: 'encapsulated (compressed) pixel data' };
  const rows = uintValue(ds.get(Tags.Rows), littleEndian) ?? 0;
  const columns = uintValue(ds.get(Tags.Columns), littleEndian) ?? 0;
  const samplesPerPixel = uintValue(ds.get(Tags.SamplesPerPixel), littleEndian) ?? 1;
  const bitsAllocated = uintValue(ds.get(Tags.BitsAllocated), littleEndian) ?? 0;
  if (rows <= 0 || columns <= 0 || samplesPerPixel <= 0) return { reason: 'Rows, Columns or Samples per Pixel missing' };
  // Bit-packed samples (BitsAllocated 1) share bytes between pixels: no byte maps to one pixel.
  if (bitsAllocated <= 0 || bitsAllocated % 8 !== 0) return { reason: 'pixel samples not a whole number of bytes' };
  const photometric = asciiValue(ds.get(Tags.PhotometricInterpretation))?.toUpperCase() ?? '';
  // 4:2:2 and 4:2:0 share chroma between pixels, so a sample is not one pixel's either.
  if (/^YBR_.*(422|420)$/.test(photometric)) return { reason: 'chroma-subsampled pixel data' };
  const framesText = asciiValue(ds.get(Tags.NumberOfFrames));
  const frames = framesText === undefined || framesText === '' ? 1 : Number(framesText);
  if (!Number.isInteger(frames) || frames < 1) return { reason: 'Number of Frames not a positive integer' };
  const bytesPerSample = bitsAllocated / 8;
  const frameBytes = rows * columns * samplesPerPixel * bytesPerSample;
  if (pixel.length < frames * frameBytes) return { reason: 'pixel data shorter than its frames' };
  const planar = samplesPerPixel > 1 && uintValue(ds.get(Tags.PlanarConfiguration), littleEndian) === 1;
  return { geometry: { rows, columns, samplesPerPixel, bytesPerSample, planar, frames, frameBytes } };
}

/** Byte ranges [start, end) inside one frame that the boxes cover, sorted and merged. */
export function frameSpans(g: PixelGeometry, boxes: readonly Box[]): [number, number][] {
  const spans: [number, number][] = [];
  const pixelBytes = g.planar ? g.bytesPerSample : g.samplesPerPixel * g.bytesPerSample;
  const planes = g.planar ? g.samplesPerPixel : 1;
  const planeBytes = g.rows * g.columns * g.bytesPerSample;
  for (const [x, y, w, h] of boxes) {
    const x0 = Math.max(0, x);
    const x1 = Math.min(g.columns, x + w);
    const y1 = Math.min(g.rows, y + h);
    if (x1 <= x0) continue;
    for (let p = 0; p < planes; p++) {
      for (let row = Math.max(0, y); row < y1; row++) {
        const start = p * planeBytes + (row * g.columns + x0) * pixelBytes;
        spans.push([start, start + (x1 - x0) * pixelBytes]);
      }
    }
  }
  spans.sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const s of spans) {
    const last = merged[merged.length - 1];
    if (last && s[0] <= last[1]) last[1] = Math.max(last[1], s[1]);
    else merged.push([s[0], s[1]]);
  }
  return merged;
}

/** First span whose end lies after `offset`. */
function firstSpanAfter(spans: readonly [number, number][], offset: number): number {
  let lo = 0;
  let hi = spans.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((spans[mid]?.[1] ?? 0) <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The pixel data value with the boxes set to zero in every frame. Chunks that no box touches
 * pass through as they are; a touched chunk is copied before it is changed, so the source's
 * buffers are never written to. Bytes after the last frame (padding) pass through.
 */
export async function* blackOutBoxes(chunks: AsyncIterable<Uint8Array>, g: PixelGeometry, boxes: readonly Box[]): AsyncGenerator<Uint8Array> {
  const spans = frameSpans(g, boxes);
  const pixelEnd = g.frames * g.frameBytes;
  let position = 0;
  for await (const chunk of chunks) {
    const chunkStart = position;
    const chunkEnd = position + chunk.length;
    position = chunkEnd;
    let out: Buffer | undefined;
    let p = chunkStart;
    while (spans.length > 0 && p < chunkEnd && p < pixelEnd) {
      const frameStart = Math.floor(p / g.frameBytes) * g.frameBytes;
      const from = p - frameStart;
      const to = Math.min(chunkEnd, frameStart + g.frameBytes) - frameStart;
      for (let i = firstSpanAfter(spans, from); i < spans.length; i++) {
        const span = spans[i];
        if (!span || span[0] >= to) break;
        out ??= Buffer.from(chunk);
        out.fill(0, frameStart + Math.max(span[0], from) - chunkStart, frameStart + Math.min(span[1], to) - chunkStart);
      }
      p = frameStart + to;
    }
    yield out ?? chunk;
  }
}
