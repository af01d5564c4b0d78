/**
 * Where each frame of a research copy lies in the copy's bytes: a frame request is then one
 * ranged read of the copy, whatever its size. Built while the copy is streamed out at
 * ingestion (frameIndexBuilder), or from the copy itself for instances ingested before 0.7.0.
 */
import type { StoredFrameIndex } from '../catalog/documents';

/** Byte ranges in the research copy: [offset, length] of each piece. */
export type ByteRange = readonly [offset: number, length: number];

export type FrameIndex =
  /** Native pixel data: frame i (0-based) is `frameLength` bytes at `offset + i * frameLength`. */
  | { kind: 'native'; count: number; offset: number; frameLength: number }
  /**
   * Encapsulated pixel data: the value bytes (item headers excluded) of the fragments of each
   * frame, in order; a frame is the concatenation of its fragments.
   */
  | { kind: 'encapsulated'; count: number; frames: ByteRange[][] }
  /**
   * Native pixel data of one bit per sample whose frames do not start on a byte boundary
   * (PS3.5 8.1.1: the bits of consecutive frames are packed with no padding between them, so
   * a frame of 23 x 38 pixels starts at bit 874 of the value). Frame i is the `frameBits` bits
   * from bit `i * frameBits` of the value at `offset`, least significant bit first; see
   * bitPackedFrameRange and repackBitFrame (frameIndexBits.ts). When Rows x Columns x Samples
   * is a multiple of 8, one-bit frames are byte-aligned and indexed as `native`.
   */
  | { kind: 'bitPacked'; count: number; offset: number; frameBits: number }
  /** No pixel data (a structured report, a presentation state...). */
  | { kind: 'none' };

/** Gives the frame index of a research instance; builds and keeps it on first use when the catalog has none. */
export interface FrameIndexSource {
  /**
   * `frames` is the index as the instance's catalog document keeps it, when the caller read it
   * with the document (an index kept in the document then costs no further read). With the
   * document's version (`updatedAt`, `size`, `sourceVersion`), a sidecar is read once and then
   * found in memory, without reading the document again.
   */
  frameIndex(instance: IndexedInstance): Promise<FrameIndex>;
}

/** What a FrameIndexSource is told of an instance: its UIDs and copy, and what the caller read of its document. */
export interface IndexedInstance {
  studyInstanceUid: string;
  sopInstanceUid: string;
  researchBlob: string;
  frames?: StoredFrameIndex;
  /** The document's version as the caller read it: its last change, and the copy's size and source version. */
  updatedAt?: string;
  size?: number;
  sourceVersion?: string;
}
