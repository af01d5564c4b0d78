/**
 * RLE Lossless (PS3.5 Annex G): our encoder and decoder round trip any frame, our decoder
 * reads what dcmtk's encoder (`dcmcrle`) writes, and dcmtk's decoder (`dcmdrle`) reads what
 * ours writes, byte for byte. Debian dcmtk is installed by .ci/run.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import fc from 'fast-check';

import { parseDicomBuffer } from '../../../../shared/dicom/parser';
import { decodeFrame, FrameDecodeError, jpegColourGuess, RLE_LOSSLESS } from '../../../../shared/dicom/pixels/codecs';
import { decodeRleFrame, encodeRleFrame, RleError } from '../../../../shared/dicom/pixels/rle';
import { encodeDataset, encodeFileMeta, encodePixelDataHeader } from '../../../../shared/dicom/writer';
import { fragments } from '../../encapsulated';

const FIXTURES = join(__dirname, '..', '..', '..', 'fixtures', 'dicom');
const work = mkdtempSync(join(tmpdir(), 'rle-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));


describe('RLE Lossless frames', () => {
  it('given any frame (1 or 3 samples, 8 or 16 bits, runs and noise), then encoding and decoding gives it back and each segment is of even length', () => {
    fc.assert(
      fc.property(
        fc.record({ rows: fc.integer({ min: 1, max: 9 }), columns: fc.integer({ min: 1, max: 300 }), samplesPerPixel: fc.constantFrom(1, 3), bytesPerSample: fc.constantFrom(1, 2), seed: fc.integer() }),
        fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 64 }),
        (g, pattern) => {
          const n = g.rows * g.columns * g.samplesPerPixel * g.bytesPerSample;
          // Long runs (the pattern's values repeated) mixed with short literal stretches.
          const frame = Buffer.alloc(n);
          for (let i = 0; i < n; i++) frame[i] = (g.seed + i) % 7 === 0 ? (i * 31) & 0xff : (pattern[Math.floor(i / 130) % pattern.length] ?? 0);
          const rle = encodeRleFrame(frame, g);
          const segments = rle.readUInt32LE(0);
          expect(segments).toBe(g.samplesPerPixel * g.bytesPerSample);
          for (let s = 0; s < segments; s++) {
            const start = rle.readUInt32LE(4 + 4 * s);
            const end = s + 1 < segments ? rle.readUInt32LE(8 + 4 * s) : rle.length;
            expect((end - start) % 2).toBe(0);
          }
          expect(decodeRleFrame(rle, g).equals(frame)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('given a long row of one value and a row of all-different bytes, then replicate runs stop at 128 and literal runs at 128', () => {
    const g = { rows: 2, columns: 300, samplesPerPixel: 1, bytesPerSample: 1 };
    const frame = Buffer.concat([Buffer.alloc(300, 9), Buffer.from(Array.from({ length: 300 }, (_, i) => i & 0xff))]);
    const rle = encodeRleFrame(frame, g);
    // Row 1: 128 + 128 + 44 repeated: three replicate runs of two bytes each.
    expect([...rle.subarray(64, 70)]).toEqual([257 - 128, 9, 257 - 128, 9, 257 - 44, 9]);
    expect(rle[70]).toBe(127);
    expect(decodeRleFrame(rle, g).equals(frame)).toBe(true);
  });

  it('given an RLE frame with too few segments, or a segment that ends early, then it is refused', () => {
    const g = { rows: 4, columns: 4, samplesPerPixel: 1, bytesPerSample: 2 };
    const rle = encodeRleFrame(Buffer.alloc(32, 3), g);
    expect(() => decodeRleFrame(rle, { ...g, bytesPerSample: 1 })).toThrow(RleError);
    expect(() => decodeRleFrame(rle.subarray(0, rle.length - 2), { ...g, rows: 40 })).toThrow(RleError);
  });

  it('given a real file compressed by dcmtk (dcmcrle), then our decoder gives the native pixels byte for byte; and dcmtk (dcmdrle) decodes our encoding of them to the same', async () => {
    const source = join(FIXTURES, 'deid', 'ultrasounds__GREYSCALE_IMAGE.dcm');
    const theirs = join(work, 'dcmtk-rle.dcm');
    execFileSync('dcmcrle', [source, theirs], { stdio: 'ignore' });
    const native = await parseDicomBuffer(readFileSync(source));
    const compressed = await parseDicomBuffer(readFileSync(theirs));
    const g = { rows: 768, columns: 1024, samplesPerPixel: 1, bytesPerSample: 1 };
    const frame = fragments(compressed.pixelValue as Buffer)[0] as Buffer;
    const ours = await decodeFrame(RLE_LOSSLESS, frame, g);
    expect(ours.equals(native.pixelValue as Buffer)).toBe(true);

    // Ours, wrapped in the same header, read back by dcmtk.
    const rle = encodeRleFrame(native.pixelValue as Buffer, g);
    const item = (length: number, element = 0xe000) => {
      const b = Buffer.alloc(8);
      b.writeUInt16LE(0xfffe, 0);
      b.writeUInt16LE(element, 2);
      b.writeUInt32LE(length, 4);
      return b;
    };
    const file = Buffer.concat([
      encodeFileMeta('1.2.840.10008.5.1.4.1.1.6.1', '2.25.1', RLE_LOSSLESS),
      encodeDataset(compressed.dataset, compressed.encoding),
      encodePixelDataHeader(0x7fe00010, 'OB', undefined, compressed.encoding),
      item(0),
      item(rle.length),
      rle,
      item(0, 0xe0dd),
    ]);
    const oursPath = join(work, 'ours-rle.dcm');
    const decodedPath = join(work, 'ours-decoded.dcm');
    writeFileSync(oursPath, file);
    execFileSync('dcmdrle', [oursPath, decodedPath], { stdio: 'ignore' });
    expect((await parseDicomBuffer(readFileSync(decodedPath))).pixelValue?.equals(native.pixelValue as Buffer)).toBe(true);
  });
});

describe('JPEG colour', () => {
  const jpeg = (segments: Buffer[]) => Buffer.concat([Buffer.from([0xff, 0xd8]), ...segments, Buffer.from([0xff, 0xda, 0, 2])]);
  const segment = (marker: number, body: number[]) => Buffer.from([0xff, marker, ((body.length + 2) >> 8) & 0xff, (body.length + 2) & 0xff, ...body]);
  const sof = (ids: number[]) => segment(0xc0, [8, 0, 16, 0, 16, 3, ids[0]!, 0x11, 0, ids[1]!, 0x11, 0, ids[2]!, 0x11, 0]);

  it('given a colour JPEG, then the guess follows libjpeg: JFIF is YCbCr, Adobe by its transform flag, else the component IDs', () => {
    expect(jpegColourGuess(jpeg([segment(0xe0, [...Buffer.from('JFIF\0'), 1, 1]), sof([0x52, 0x47, 0x42])]))).toBe('YCbCr');
    expect(jpegColourGuess(jpeg([segment(0xee, [...Buffer.from('Adobe'), 0, 100, 0, 0, 0, 0, 0]), sof([1, 2, 3])]))).toBe('RGB');
    expect(jpegColourGuess(jpeg([segment(0xee, [...Buffer.from('Adobe'), 0, 100, 0, 0, 0, 0, 1]), sof([0x52, 0x47, 0x42])]))).toBe('YCbCr');
    expect(jpegColourGuess(jpeg([sof([0x52, 0x47, 0x42])]))).toBe('RGB');
    expect(jpegColourGuess(jpeg([sof([1, 2, 3])]))).toBe('YCbCr');
  });

  it('given the real RGB JPEG without colour transform markers (labelled RGB), then the frame is refused rather than decoded with converted colours', async () => {
    const parsed = await parseDicomBuffer(readFileSync(join(FIXTURES, 'pydicom-deb', 'test_files__SC_jpeg_no_color_transform.dcm')));
    const frame = Buffer.concat(fragments(parsed.pixelValue as Buffer));
    await expect(decodeFrame('1.2.840.10008.1.2.4.50', frame, { rows: 256, columns: 256, samplesPerPixel: 3, bytesPerSample: 1, photometric: 'RGB' })).rejects.toThrow(FrameDecodeError);
  });
});
