/**
 * Decoding one frame of compressed (encapsulated) pixel data to native bytes, for OCR and
 * redaction (issue 17). The decoders are maintained packages compiled to WebAssembly (the
 * cornerstone codecs: libjpeg-turbo, CharLS, OpenJPEG), jpeg-lossless-decoder-js for lossless
 * JPEG, and the project's own RLE (rle.ts). Each package is loaded on first use only: a process
 * that never sees a compressed file at risk never loads a codec. A loaded WebAssembly module
 * is kept for the process (a few MB each); a decoder object lives for one frame.
 *
 * What comes out is the native frame as the header will describe it after the fix-ups of
 * `decodedImage`: interleaved (colour by pixel), little endian, BitsAllocated per sample.
 */
import { createRequire } from 'node:module';

import { decodeRleFrame } from './rle';

/** The transfer syntaxes a frame of which can be decoded here, with the standard each one follows. */
export const DECODABLE: ReadonlyMap<string, { name: string; lossy: boolean; method?: string }> = new Map([
  ['1.2.840.10008.1.2.4.50', { name: 'JPEG baseline', lossy: true, method: 'ISO_10918_1' }],
  ['1.2.840.10008.1.2.4.51', { name: 'JPEG extended', lossy: true, method: 'ISO_10918_1' }],
  ['1.2.840.10008.1.2.4.57', { name: 'JPEG lossless', lossy: false }],
  ['1.2.840.10008.1.2.4.70', { name: 'JPEG lossless SV1', lossy: false }],
  ['1.2.840.10008.1.2.4.80', { name: 'JPEG-LS lossless', lossy: false }],
  ['1.2.840.10008.1.2.4.81', { name: 'JPEG-LS near-lossless', lossy: true, method: 'ISO_14495_1' }],
  ['1.2.840.10008.1.2.4.90', { name: 'JPEG 2000 lossless', lossy: false }],
  ['1.2.840.10008.1.2.4.91', { name: 'JPEG 2000', lossy: true, method: 'ISO_15444_1' }],
  ['1.2.840.10008.1.2.5', { name: 'RLE Lossless', lossy: false }],
]);

/** RLE Lossless: what a redacted compressed source is written in. */
export const RLE_LOSSLESS = '1.2.840.10008.1.2.5';

/** A native frame's layout, as the decoded frame must match it. */
export interface DecodedLayout {
  rows: number;
  columns: number;
  samplesPerPixel: number;
  bytesPerSample: number;
  /** The source's PhotometricInterpretation, when known: a colour JPEG labelled RGB is checked against it. */
  photometric?: string;
}

/** Thrown when a frame cannot be decoded; the message names a category, never a value. */
export class FrameDecodeError extends Error {
  override name = 'FrameDecodeError';
}

/** What an Emscripten codec object offers (the cornerstone codecs share this shape). */
interface WasmDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  decode(): void;
  getFrameInfo(): { width: number; height: number; bitsPerSample: number; componentCount: number };
  getDecodedBuffer(): Uint8Array;
  getInterleaveMode?(): number;
  delete(): void;
}
type WasmModule = Record<string, new () => WasmDecoder>;

const requireHere = createRequire(__filename);
const modules = new Map<string, Promise<WasmModule>>();

/**
 * The WebAssembly module of a cornerstone codec, loaded once. The factory finds its .wasm
 * beside its .js in Node; its console output (OpenJPEG prints [INFO] lines) is dropped.
 */
function wasm(path: string): Promise<WasmModule> {
  let m = modules.get(path);
  if (!m) {
    const factory = requireHere(path) as (options: object) => Promise<WasmModule>;
    const quiet = () => undefined;
    m = factory({ print: quiet, printErr: quiet });
    // A failed load is not kept: the next file tries again.
    m.catch(() => modules.delete(path));
    modules.set(path, m);
  }
  return m;
}

async function decodeWithWasm(path: string, className: string, data: Uint8Array): Promise<{ bytes: Uint8Array; width: number; height: number; components: number; bits: number; planar: boolean }> {
  const mod = await wasm(path);
  const Decoder = mod[className];
  if (!Decoder) throw new FrameDecodeError(`the codec module has no ${className}`);
  const decoder = new Decoder();
  try {
    decoder.getEncodedBuffer(data.length).set(data);
    decoder.decode();
    const info = decoder.getFrameInfo();
    // Copied out: the view lies in the module's memory, which the next decode reuses.
    const bytes = Buffer.from(decoder.getDecodedBuffer());
    // CharLS gives a JPEG-LS image coded without interleave (mode 0) plane by plane.
    const planar = info.componentCount > 1 && decoder.getInterleaveMode?.() === 0;
    return { bytes, width: info.width, height: info.height, components: info.componentCount, bits: info.bitsPerSample, planar };
  } catch (e) {
    if (e instanceof FrameDecodeError) throw e;
    // Emscripten throws numbers and strings as well as Errors: a category only goes up.
    throw new FrameDecodeError('the codec could not decode the frame', { cause: e });
  } finally {
    decoder.delete();
  }
}

function losslessJpeg(data: Uint8Array, bytesPerSample: number): { bytes: Uint8Array; width: number; height: number; components: number; bits: number; planar: boolean } {
  const { Decoder } = requireHere('jpeg-lossless-decoder-js') as { Decoder: new () => LosslessDecoder };
  const decoder = new Decoder();
  try {
    const copy = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
    const out = decoder.decode(copy, 0, copy.byteLength, bytesPerSample);
    return { bytes: Buffer.from(out.buffer, out.byteOffset, out.byteLength), width: decoder.xDim, height: decoder.yDim, components: decoder.numComp, bits: decoder.precision, planar: false };
  } catch (e) {
    throw new FrameDecodeError('the lossless JPEG decoder could not decode the frame', { cause: e });
  }
}

interface LosslessDecoder {
  decode(buffer: ArrayBuffer, offset: number, length: number, numBytes: number): Uint8Array | Uint16Array;
  xDim: number;
  yDim: number;
  numComp: number;
  precision: number;
}

/**
 * How libjpeg will take a 3-component JPEG: as YCbCr (and convert it to RGB) or as RGB. It
 * follows a JFIF marker (YCbCr), an Adobe marker's transform flag, else the component IDs
 * ('R', 'G', 'B': RGB; anything else: YCbCr), in the headers before the first scan.
 */
export function jpegColourGuess(data: Uint8Array): 'YCbCr' | 'RGB' {
  let i = 2;
  let ids: number[] | undefined;
  while (i + 4 <= data.length && data[i] === 0xff) {
    const marker = data[i + 1] ?? 0;
    const length = ((data[i + 2] ?? 0) << 8) | (data[i + 3] ?? 0);
    const body = data.subarray(i + 4, i + 2 + length);
    if (marker === 0xe0 && Buffer.from(body.subarray(0, 4)).toString('latin1') === 'JFIF') return 'YCbCr';
    if (marker === 0xee && Buffer.from(body.subarray(0, 5)).toString('latin1') === 'Adobe') return body[11] === 0 ? 'RGB' : 'YCbCr';
    // SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC): the frame header, with the component IDs.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) ids = [body[6], body[9], body[12]].map((v) => v ?? 0);
    if (marker === 0xda) break;
    i += 2 + length;
  }
  return ids && ids[0] === 0x52 && ids[1] === 0x47 && ids[2] === 0x42 ? 'RGB' : 'YCbCr';
}

/** Plane by plane (R…R G…G B…B) to colour by pixel. */
function interleave(bytes: Uint8Array, g: DecodedLayout): Buffer {
  const n = g.rows * g.columns;
  const s = g.samplesPerPixel;
  const b = g.bytesPerSample;
  const out = Buffer.alloc(n * s * b);
  for (let c = 0; c < s; c++) {
    for (let p = 0; p < n; p++) for (let k = 0; k < b; k++) out[(p * s + c) * b + k] = bytes[(c * n + p) * b + k] ?? 0;
  }
  return out;
}

/**
 * One frame (its fragments joined) decoded to native bytes of layout `g`. Throws
 * FrameDecodeError when the syntax has no decoder here, the codec fails, or what it gives does
 * not match the header (size, samples, bit depth).
 */
export async function decodeFrame(transferSyntaxUid: string, data: Uint8Array, g: DecodedLayout): Promise<Buffer> {
  const frameBytes = g.rows * g.columns * g.samplesPerPixel * g.bytesPerSample;
  if (transferSyntaxUid === RLE_LOSSLESS) {
    try {
      return decodeRleFrame(data, g);
    } catch (e) {
      throw new FrameDecodeError('the RLE frame could not be decoded', { cause: e });
    }
  }
  let decoded;
  switch (transferSyntaxUid) {
    case '1.2.840.10008.1.2.4.50':
    case '1.2.840.10008.1.2.4.51':
      // libjpeg-turbo in its 8-bit build: 12-bit extended JPEG fails here and the file is held.
      if (g.bytesPerSample !== 1) throw new FrameDecodeError('JPEG with samples wider than 8 bits has no decoder here');
      // Labelled RGB (no colour transform), but libjpeg would take it as YCbCr and convert it: the colours would be wrong.
      if (g.samplesPerPixel === 3 && g.photometric === 'RGB' && jpegColourGuess(data) === 'YCbCr') throw new FrameDecodeError('an RGB JPEG frame without colour markers would be converted by the decoder');
      decoded = await decodeWithWasm('@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs', 'JPEGDecoder', data);
      break;
    case '1.2.840.10008.1.2.4.57':
    case '1.2.840.10008.1.2.4.70':
      decoded = losslessJpeg(data, g.bytesPerSample);
      break;
    case '1.2.840.10008.1.2.4.80':
    case '1.2.840.10008.1.2.4.81':
      decoded = await decodeWithWasm('@cornerstonejs/codec-charls/decodewasmjs', 'JpegLSDecoder', data);
      break;
    case '1.2.840.10008.1.2.4.90':
    case '1.2.840.10008.1.2.4.91':
      decoded = await decodeWithWasm('@cornerstonejs/codec-openjpeg/decodewasmjs', 'J2KDecoder', data);
      break;
    default:
      throw new FrameDecodeError('no decoder for this transfer syntax');
  }
  if (decoded.width !== g.columns || decoded.height !== g.rows) throw new FrameDecodeError('the decoded frame is not the size the header gives');
  if (decoded.components !== g.samplesPerPixel) throw new FrameDecodeError('the decoded frame has another number of samples than the header gives');
  if (Math.ceil(decoded.bits / 8) > g.bytesPerSample) throw new FrameDecodeError('the decoded samples are wider than BitsAllocated');
  let bytes: Uint8Array = decoded.bytes;
  // A 12-bit JPEG-LS or JPEG 2000 frame under BitsAllocated 16 comes out 2 bytes a sample already; 8-bit under 16 does not.
  if (bytes.length * g.bytesPerSample === frameBytes && g.bytesPerSample === 2 && Math.ceil(decoded.bits / 8) === 1) {
    const wide = Buffer.alloc(frameBytes);
    for (let i = 0; i < bytes.length; i++) wide[i * 2] = bytes[i] ?? 0;
    bytes = wide;
  }
  if (bytes.length !== frameBytes) throw new FrameDecodeError('the decoded frame is not as long as the header gives');
  return decoded.planar ? interleave(bytes, g) : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
