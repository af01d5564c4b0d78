/**
 * Frames and byte ranges of a research copy: the frame list of a frames request, where each
 * frame lies (from the FrameIndexSource), and the Range header of a bulk data request.
 */
import { ErrorCodes, PipelineError } from '../errors';
import type { ByteRange, FrameIndex } from './frameIndex';

/** More frames than this in one request is refused (the answer would be one huge multipart). */
export const MAX_FRAMES_PER_REQUEST = 10_000;

/**
 * The frame numbers of a `{frames}` path segment: a comma-separated list of positive integers
 * (PS3.18 8.3.3.1), 1-based, in the order asked. Throws QUERY_INVALID naming `frames`. Pure.
 */
export function parseFrameList(text: string | undefined): number[] {
  const items = (text ?? '').split(',').map((s) => s.trim());
  if (items.length > MAX_FRAMES_PER_REQUEST) {
    throw new PipelineError(ErrorCodes.QUERY_INVALID, `frames: at most ${MAX_FRAMES_PER_REQUEST} frame numbers per request`);
  }
  return items.map((s) => {
    if (!/^[0-9]{1,9}$/.test(s) || Number(s) < 1) throw new PipelineError(ErrorCodes.QUERY_INVALID, 'frames: the frame list must be positive integers separated by commas');
    return Number(s);
  });
}

/**
 * The byte ranges of frame `n` (1-based) in the copy. Throws NOT_FOUND when the instance has
 * no pixel data or fewer frames. Pure.
 */
export function frameRanges(index: FrameIndex, n: number): ByteRange[] {
  if (index.kind === 'none') throw new PipelineError(ErrorCodes.NOT_FOUND, 'this instance has no pixel data, so no frames');
  if (n > index.count) throw new PipelineError(ErrorCodes.NOT_FOUND, `frame ${n} does not exist: the instance has ${index.count} frame(s)`);
  if (index.kind === 'native') return [[index.offset + (n - 1) * index.frameLength, index.frameLength]];
  return index.frames[n - 1] ?? [];
}

/** Total bytes of some ranges. */
export function lengthOf(ranges: readonly ByteRange[]): number {
  return ranges.reduce((sum, [, length]) => sum + length, 0);
}

/**
 * Where the encapsulated pixel data value ends in the copy: after its last fragment and the
 * sequence delimiter item (8 bytes). Undefined for native or no pixel data. Pure.
 */
export function encapsulatedValueEnd(index: FrameIndex): number | undefined {
  if (index.kind !== 'encapsulated') return undefined;
  let end = 0;
  for (const frame of index.frames) for (const [offset, length] of frame) end = Math.max(end, offset + length);
  return end + 8;
}

/** The part of a value of `length` bytes that a Range header asks for. */
export type RangeAnswer = { kind: 'whole' } | { kind: 'partial'; start: number; end: number };

/**
 * Reads a Range header (RFC 9110 14.2) against a value of `length` bytes: one `bytes=` range
 * (`a-b`, `a-`, `-n`). An absent, malformed or multi-range header gives the whole value (as
 * RFC 9110 lets a server ignore it). Throws RANGE_NOT_SATISFIABLE when the range starts past
 * the end. Pure.
 */
export function parseRange(header: string | null | undefined, length: number): RangeAnswer {
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header ?? '');
  if (!m || (m[1] === '' && m[2] === '')) return { kind: 'whole' };
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) throw new PipelineError(ErrorCodes.RANGE_NOT_SATISFIABLE, 'the range asks for no bytes');
    return { kind: 'partial', start: Math.max(0, length - suffix), end: length - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? length - 1 : Math.min(Number(m[2]), length - 1);
  if (m[2] !== '' && Number(m[2]) < start) return { kind: 'whole' };
  if (start >= length) throw new PipelineError(ErrorCodes.RANGE_NOT_SATISFIABLE, `the range starts past the value's ${length} bytes`);
  return { kind: 'partial', start, end };
}
