/**
 * Frames of one-bit native pixel data that do not start on a byte (FrameIndex `bitPacked`):
 * the bytes to read for a frame, and the frame repacked from bit 0 of its first byte, as a
 * frame of its own would be encoded (PS3.5 8.1.1), so that a client decodes it alone.
 */
import type { FrameIndex } from './frameIndex';

/** The bytes holding frame `frame` (0-based) and the bit, within the first, where the frame starts. */
export function bitPackedFrameRange(index: Extract<FrameIndex, { kind: 'bitPacked' }>, frame: number): { offset: number; length: number; shift: number } {
  const firstBit = frame * index.frameBits;
  const start = Math.floor(firstBit / 8);
  const end = Math.ceil((firstBit + index.frameBits) / 8);
  return { offset: index.offset + start, length: end - start, shift: firstBit % 8 };
}

/**
 * The `frameBits` bits that start at bit `shift` of `bytes` (least significant bit first), moved
 * to start at bit 0: ceil(frameBits / 8) bytes, the unused high bits of the last byte zero.
 */
export function repackBitFrame(bytes: Uint8Array, shift: number, frameBits: number): Buffer {
  const out = Buffer.alloc(Math.ceil(frameBits / 8));
  for (let i = 0; i < out.length; i++) {
    const lo = (bytes[i] ?? 0) >>> shift;
    const hi = shift === 0 ? 0 : ((bytes[i + 1] ?? 0) << (8 - shift)) & 0xff;
    out[i] = lo | hi;
  }
  const tail = frameBits % 8;
  if (tail) out[out.length - 1]! &= (1 << tail) - 1;
  return out;
}
