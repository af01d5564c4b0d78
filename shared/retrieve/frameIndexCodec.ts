/**
 * The frame index as it is kept: in the instance document when small (StoredFrameIndex,
 * shared/catalog/documents.ts), else in a sidecar blob next to the research copy, so that a
 * multi-frame instance of 100,000 fragments does not take its document near Cosmos DB's 2 MB
 * limit (and a point read of the document stays cheap: its cost grows with its size).
 */
import type { StoredFrameIndex } from '../catalog/documents';
import { ErrorCodes, PipelineError } from '../errors';
import type { CompactFrameIndex } from './frameIndexBuilder';

/** Largest index kept in the document, as JSON characters: about 3,000 fragments. */
export const MAX_INLINE_FRAME_INDEX = 16 * 1024;

/** The sidecar blob of a research copy. */
export function frameIndexSidecarName(researchBlob: string): string {
  return `${researchBlob}.frames`;
}

type InlineFrameIndex = Exclude<StoredFrameIndex, { kind: 'sidecar' }>;

function base64Of(values: Uint32Array): string {
  const out = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => out.writeUInt32LE(v, i * 4));
  return out.toString('base64');
}

function uint32sOf(base64: string): Uint32Array {
  const b = Buffer.from(base64, 'base64');
  if (b.length % 4 !== 0) throw corrupt();
  return Uint32Array.from({ length: b.length / 4 }, (_, i) => b.readUInt32LE(i * 4));
}

function corrupt(): PipelineError {
  return new PipelineError(ErrorCodes.INTERNAL, 'a stored frame index cannot be read');
}

export function encodeFrameIndex(c: CompactFrameIndex): InlineFrameIndex {
  if (c.kind !== 'encapsulated') return c;
  return { kind: 'encapsulated', count: c.count, start: c.start, lengths: base64Of(c.lengths), ...(c.frameStarts ? { frameStarts: base64Of(c.frameStarts) } : {}) };
}

/** The index a stored one encodes. Throws INTERNAL when it is not one this code writes. */
export function decodeFrameIndex(s: InlineFrameIndex): CompactFrameIndex {
  switch (s.kind) {
    case 'none':
    case 'native':
    case 'bitPacked':
      return s;
    case 'encapsulated': {
      const lengths = uint32sOf(s.lengths);
      const frameStarts = s.frameStarts === undefined ? undefined : uint32sOf(s.frameStarts);
      if (frameStarts ? frameStarts.length !== s.count : lengths.length !== s.count) throw corrupt();
      return { kind: 'encapsulated', count: s.count, start: s.start, lengths, ...(frameStarts ? { frameStarts } : {}) };
    }
    default:
      throw corrupt();
  }
}

/**
 * The sidecar's content: the index, and what it belongs to (the copy's source version and
 * size), so that a sidecar left by another version of the copy is never taken for this one's.
 */
export interface FrameIndexSidecar {
  format: 'frame-index/1';
  sourceVersion: string;
  size: number;
  index: InlineFrameIndex;
}

/** What the document keeps, and the sidecar to write first when the index is too large for it. */
export function placeFrameIndex(
  c: CompactFrameIndex,
  copy: { researchBlob: string; sourceVersion?: string; size: number },
  maxInline = MAX_INLINE_FRAME_INDEX,
): { stored: StoredFrameIndex; sidecar?: Buffer } {
  const inline = encodeFrameIndex(c);
  const json = JSON.stringify(inline);
  if (json.length <= maxInline || c.kind !== 'encapsulated') return { stored: inline };
  const sidecar: FrameIndexSidecar = { format: 'frame-index/1', sourceVersion: copy.sourceVersion ?? '', size: copy.size, index: inline };
  return { stored: { kind: 'sidecar', blob: frameIndexSidecarName(copy.researchBlob), count: c.count }, sidecar: Buffer.from(JSON.stringify(sidecar)) };
}

/** The index a sidecar holds, or undefined when it belongs to another version of the copy or cannot be read. */
export function readSidecar(bytes: Buffer, copy: { sourceVersion?: string; size: number }): CompactFrameIndex | undefined {
  try {
    const s = JSON.parse(bytes.toString('utf8')) as FrameIndexSidecar;
    if (s.format !== 'frame-index/1' || s.sourceVersion !== (copy.sourceVersion ?? '') || s.size !== copy.size) return undefined;
    return decodeFrameIndex(s.index);
  } catch {
    return undefined;
  }
}
