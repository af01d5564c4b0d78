/**
 * The parts of redaction on compressed pixel data that need no OCR: the header of the copy
 * (photometric interpretation as decoded, colour by pixel, offset tables dropped, lossy
 * marking kept), the frames of a source located by range, and the streaming transcoder
 * (fragments gathered per frame however the stream is cut, boxes blacked out, RLE written,
 * a frame that does not decode holding the file).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { bufferReader } from '../../../shared/dicom/byteReader';
import { asciiValue, DicomDataset, encodeAsciiValue, uintValue } from '../../../shared/dicom/dataset';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import type { PixelGeometry } from '../../../shared/dicom/pixels/blackout';
import { RLE_LOSSLESS } from '../../../shared/dicom/pixels/codecs';
import { decodeRleFrame, encodeRleFrame } from '../../../shared/dicom/pixels/rle';
import type { TextDetector } from '../../../shared/dicom/pixels/textDetector';
import { Tags } from '../../../shared/dicom/tags';
import { ErrorCodes, isPipelineError, PipelineError } from '../../../shared/errors';
import { decodedGeometry, decodedPhotometric, fixUpTranscodedHeader, locateSourceFrames, transcodeToRle } from '../../../shared/ingest/compressedPixels';
import { prepareDeidentifiedInstance } from '../../../shared/ingest/deidentifyInstance';
import { expandFrameIndex, watchFrames } from '../../../shared/retrieve/frameIndexBuilder';
import { fragments as fragmentsOf } from '../encapsulated';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');


const text = (ds: DicomDataset, tag: number, vr: string, v: string) => ds.set(tag, { tag, vr, value: encodeAsciiValue(v, vr) });
const us = (ds: DicomDataset, tag: number, v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  ds.set(tag, { tag, vr: 'US', value: b });
};

function header(opts: { photometric: string; spp: number; bits?: number; frames?: number }): DicomDataset {
  const ds: DicomDataset = new Map();
  us(ds, Tags.Rows, 4);
  us(ds, Tags.Columns, 6);
  us(ds, Tags.SamplesPerPixel, opts.spp);
  us(ds, Tags.BitsAllocated, opts.bits ?? 8);
  text(ds, Tags.PhotometricInterpretation, 'CS', opts.photometric);
  if (opts.spp > 1) us(ds, Tags.PlanarConfiguration, 1);
  if (opts.frames) text(ds, Tags.NumberOfFrames, 'IS', String(opts.frames));
  return ds;
}

describe('the header of a transcoded copy', () => {
  it('given colour JPEG (YBR_FULL_422, YBR_FULL) or JPEG 2000 with a colour transform (YBR_ICT, YBR_RCT), then the decoded frames are RGB; JPEG-LS, lossless JPEG, RLE and grey keep theirs', () => {
    expect(decodedPhotometric('1.2.840.10008.1.2.4.50', 'YBR_FULL_422', 3)).toBe('RGB');
    expect(decodedPhotometric('1.2.840.10008.1.2.4.51', 'YBR_FULL', 3)).toBe('RGB');
    expect(decodedPhotometric('1.2.840.10008.1.2.4.91', 'YBR_ICT', 3)).toBe('RGB');
    expect(decodedPhotometric('1.2.840.10008.1.2.4.90', 'YBR_RCT', 3)).toBe('RGB');
    expect(decodedPhotometric('1.2.840.10008.1.2.4.80', 'YBR_FULL', 3)).toBe('YBR_FULL');
    expect(decodedPhotometric('1.2.840.10008.1.2.5', 'RGB', 3)).toBe('RGB');
    expect(decodedPhotometric('1.2.840.10008.1.2.4.50', 'MONOCHROME2', 1)).toBe('MONOCHROME2');
  });

  it('given a lossy JPEG source without its method, then the copy says RGB, colour by pixel, lossy 01 with the JPEG method, and carries no offset table of the source', () => {
    const ds = header({ photometric: 'YBR_FULL_422', spp: 3 });
    ds.set(Tags.ExtendedOffsetTable, { tag: Tags.ExtendedOffsetTable, vr: 'OV', value: Buffer.alloc(8) });
    ds.set(Tags.ExtendedOffsetTableLengths, { tag: Tags.ExtendedOffsetTableLengths, vr: 'OV', value: Buffer.alloc(8) });
    const layout = decodedGeometry(ds, true, '1.2.840.10008.1.2.4.50');
    if ('reason' in layout) throw new Error(layout.reason);
    fixUpTranscodedHeader(ds, '1.2.840.10008.1.2.4.50', 'RGB', layout.geometry, true);
    expect(asciiValue(ds.get(Tags.PhotometricInterpretation))).toBe('RGB');
    expect(uintValue(ds.get(Tags.PlanarConfiguration), true)).toBe(0);
    expect(asciiValue(ds.get(Tags.LossyImageCompression))).toBe('01');
    expect(asciiValue(ds.get(Tags.LossyImageCompressionMethod))).toBe('ISO_10918_1');
    expect(ds.has(Tags.ExtendedOffsetTable) || ds.has(Tags.ExtendedOffsetTableLengths)).toBe(false);
  });

  it('given a lossy source that names its method and ratio, then both are kept; given a lossless source, then no lossy marking is added', () => {
    const lossy = header({ photometric: 'MONOCHROME2', spp: 1 });
    text(lossy, Tags.LossyImageCompression, 'CS', '01');
    text(lossy, Tags.LossyImageCompressionMethod, 'CS', 'ISO_14495_1');
    text(lossy, Tags.LossyImageCompressionRatio, 'DS', '15.4');
    const g = (decodedGeometry(lossy, true, '1.2.840.10008.1.2.4.81') as { geometry: PixelGeometry }).geometry;
    fixUpTranscodedHeader(lossy, '1.2.840.10008.1.2.4.81', 'MONOCHROME2', g, true);
    expect([Tags.LossyImageCompression, Tags.LossyImageCompressionMethod, Tags.LossyImageCompressionRatio].map((t) => asciiValue(lossy.get(t)))).toEqual(['01', 'ISO_14495_1', '15.4']);
    expect(lossy.has(Tags.PlanarConfiguration)).toBe(false);

    const lossless = header({ photometric: 'MONOCHROME2', spp: 1 });
    fixUpTranscodedHeader(lossless, '1.2.840.10008.1.2.4.80', 'MONOCHROME2', g, true);
    expect(lossless.has(Tags.LossyImageCompression)).toBe(false);
    // Lossless over a source that was once lossy: it stays marked.
    text(lossless, Tags.LossyImageCompression, 'CS', '01');
    fixUpTranscodedHeader(lossless, '1.2.840.10008.1.2.5', 'MONOCHROME2', g, true);
    expect(asciiValue(lossless.get(Tags.LossyImageCompression))).toBe('01');
  });

  it('given syntaxes or layouts the decoders do not take, then the reason names the category', () => {
    expect(decodedGeometry(header({ photometric: 'MONOCHROME2', spp: 1 }), true, '1.2.840.10008.1.2.4.201')).toEqual({ reason: expect.stringContaining('no decoder') as unknown });
    expect(decodedGeometry(header({ photometric: 'MONOCHROME2', spp: 1, bits: 32 }), true, '1.2.840.10008.1.2.5')).toEqual({ reason: expect.stringContaining('BitsAllocated other than 8 or 16') as unknown });
    expect(decodedGeometry(header({ photometric: 'RGB', spp: 3, frames: 3 }), true, '1.2.840.10008.1.2.5')).toMatchObject({ geometry: { frames: 3, frameBytes: 72, planar: false } });
  });
});

const item = (length: number, element = 0xe000) => {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(0xfffe, 0);
  b.writeUInt16LE(element, 2);
  b.writeUInt32LE(length, 4);
  return b;
};

/** An encapsulated RLE value: an empty offset table, then each frame's RLE split into `split` fragments. */
function rleValue(frames: Buffer[], g: PixelGeometry, split: number): { value: Buffer; fragments: number } {
  const parts: Buffer[] = [item(0)];
  let fragments = 0;
  for (const f of frames) {
    const rle = encodeRleFrame(f, g);
    const size = Math.ceil(rle.length / split / 2) * 2;
    for (let o = 0; o < rle.length; o += size) {
      const piece = rle.subarray(o, Math.min(rle.length, o + size));
      parts.push(item(piece.length), piece);
      fragments++;
    }
  }
  parts.push(item(0, 0xe0dd));
  return { value: Buffer.concat(parts), fragments };
}

async function* cut(value: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < value.length; o += size) yield value.subarray(o, o + size);
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of chunks) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

const hold = (why: string, cause?: unknown) => new PipelineError(ErrorCodes.DEID_BURNED_IN_ANNOTATION, `held: ${why}`, { cause });

describe('the streaming transcoder', () => {
  const g: PixelGeometry = { rows: 4, columns: 6, samplesPerPixel: 1, bytesPerSample: 1, planar: false, frames: 3, frameBytes: 24 };
  const frames = [0, 1, 2].map((f) => Buffer.from(Array.from({ length: 24 }, (_, i) => 10 + f * 50 + i)));

  it.each([1, 3, 7, 1000])('given RLE frames in one fragment each, the stream cut every %i bytes, then each frame comes out as one RLE fragment with the box zeroed and the rest as it was', async (size) => {
    const { value } = rleValue(frames, g, 1);
    const ds = header({ photometric: 'MONOCHROME2', spp: 1, frames: 3 });
    // The frames located by range, as the OCR step does (the value at offset 0 of "the source").
    const source = await locateSourceFrames((o, l) => Promise.resolve(value.subarray(o, o + l)), ds, { explicitVR: true, littleEndian: true }, '1.2.840.10008.1.2.5', { tag: Tags.PixelData, vr: 'OB', length: undefined }, 0, value.length);
    expect(source.frames).toHaveLength(3);
    const out = await collect(transcodeToRle(cut(value, size), { transferSyntaxUid: '1.2.840.10008.1.2.5', geometry: g, boxes: [[1, 1, 2, 2]], source, littleEndian: true, sourcePhotometric: 'MONOCHROME2' }, hold));
    // Empty offset table, three fragments, the delimiter.
    expect(out.subarray(0, 8).equals(item(0))).toBe(true);
    let at = 8;
    for (const [f, frame] of frames.entries()) {
      const length = out.readUInt32LE(at + 4);
      const decoded = decodeRleFrame(out.subarray(at + 8, at + 8 + length), g);
      const expected = Buffer.from(frame);
      for (const i of [7, 8, 13, 14]) expected[i] = 0;
      expect([f, decoded.equals(expected)]).toEqual([f, true]);
      at += 8 + length;
    }
    expect(out.subarray(at).equals(item(0, 0xe0dd))).toBe(true);
  });

  it('given a single frame split over several fragments, then they are joined before decoding', async () => {
    const one = { ...g, frames: 1 };
    const { value, fragments } = rleValue([frames[0] as Buffer], one, 3);
    expect(fragments).toBe(3);
    const ds = header({ photometric: 'MONOCHROME2', spp: 1 });
    const source = await locateSourceFrames((o, l) => Promise.resolve(value.subarray(o, o + l)), ds, { explicitVR: true, littleEndian: true }, '1.2.840.10008.1.2.5', { tag: Tags.PixelData, vr: 'OB', length: undefined }, 0, value.length);
    const out = await collect(transcodeToRle(cut(value, 5), { transferSyntaxUid: '1.2.840.10008.1.2.5', geometry: one, boxes: [], source, littleEndian: true, sourcePhotometric: 'MONOCHROME2' }, hold));
    expect(decodeRleFrame(out.subarray(16, 16 + out.readUInt32LE(12)), one).equals(frames[0] as Buffer)).toBe(true);
  });

  it('given a frame that does not decode, then the stream fails with the hold, naming the frame and not its content', async () => {
    const { value } = rleValue(frames, g, 1);
    const ds = header({ photometric: 'MONOCHROME2', spp: 1, frames: 3 });
    const source = await locateSourceFrames((o, l) => Promise.resolve(value.subarray(o, o + l)), ds, { explicitVR: true, littleEndian: true }, '1.2.840.10008.1.2.5', { tag: Tags.PixelData, vr: 'OB', length: undefined }, 0, value.length);
    // The second frame's segment count broken.
    const broken = Buffer.from(value);
    const second = (source.frames[1]?.[0]?.[0] ?? 0);
    broken.writeUInt32LE(5, second);
    const failure = await collect(transcodeToRle(cut(broken, 64), { transferSyntaxUid: '1.2.840.10008.1.2.5', geometry: g, boxes: [], source, littleEndian: true, sourcePhotometric: 'MONOCHROME2' }, hold)).catch((e: unknown) => e);
    expect(isPipelineError(failure, ErrorCodes.DEID_BURNED_IN_ANNOTATION)).toBe(true);
    expect((failure as Error).message).toBe('held: frame 2 of the compressed pixel data could not be decoded (the RLE frame could not be decoded)');
  });
});

/** Always reads one harmless word at the same place: the gate finds nothing identifying, so the file passes with one box. */
const oneWord = (box: [number, number, number, number]): TextDetector => ({ detect: () => Promise.resolve([{ box, text: 'XYZZY', confidence: 90 }]), close: () => Promise.resolve() });

async function transcoded(fixture: string, detector: TextDetector) {
  const source = readFileSync(join(FIXTURES, fixture));
  const prepared = await prepareDeidentifiedInstance(bufferReader(source), {
    deid: { profile: defaultProfile(), key: Buffer.from('compressed pixels test key, 32 b.'), keyId: 'test' },
    maxHeaderBytes: 1 << 24,
    totalSize: source.length,
    burnedIn: { mode: 'redact', ocr: { detector, sampleFrames: 5 } },
    readSourceRange: (offset, length) => Promise.resolve(source.subarray(offset, offset + length)),
  });
  const watched = watchFrames(prepared);
  const copy = await collect(watched.output());
  const result = watched.result();
  if (!('index' in result)) throw result.failure;
  const index = expandFrameIndex(result.index);
  if (index.kind !== 'encapsulated') throw new Error(`index of kind ${index.kind}`);
  return { source, prepared, copy, index };
}

describe('given real compressed multi-frame sources with text found, the copy and its frame index', () => {
  it('RLE secondary capture of 2 frames: the index (built as the copy streams) gives one RLE fragment per frame, each the source frame with the box zeroed', async () => {
    const { source, prepared, copy, index } = await transcoded('pydicom-deb/test_files__SC_rgb_rle_2frame.dcm', oneWord([10, 10, 30, 12]));
    expect(prepared.outputTs).toBe(RLE_LOSSLESS);
    expect(index.count).toBe(2);
    const g = { rows: 100, columns: 100, samplesPerPixel: 3, bytesPerSample: 1 };
    const parsed = await parseDicomBuffer(source);
    const sourceFrames = fragmentsOf(parsed.pixelValue as Buffer).map((f) => decodeRleFrame(f, g));
    const boxes = prepared.pixelBoxes ?? [];
    expect(boxes).toEqual([[6, 6, 38, 20]]);
    for (const [f, ranges] of index.frames.entries()) {
      expect(ranges).toHaveLength(1);
      const [offset, length] = ranges[0] as [number, number];
      const frame = decodeRleFrame(copy.subarray(offset, offset + length), g);
      const expected = Buffer.from(sourceFrames[f] as Buffer);
      for (let y = 6; y < 26; y++) expected.fill(0, (y * 100 + 6) * 3, (y * 100 + 44) * 3);
      expect([f, frame.equals(expected)]).toEqual([f, true]);
    }
  });

  it('JPEG baseline ultrasound of 8 frames in several fragments each and no offset table: 8 RGB frames in the copy, zero in the box, the source elsewhere (as dcmtk decodes it)', async () => {
    const fixture = 'dicomParser/encapsulated__multi-frame__IM00001.fragmented_no_bot_jpeg_baseline.50.dcm';
    const { prepared, copy, index } = await transcoded(fixture, oneWord([100, 100, 60, 14]));
    expect(index.count).toBe(8);
    const parsedCopy = await parseDicomBuffer(copy);
    expect(asciiValue(parsedCopy.dataset.get(Tags.PhotometricInterpretation))).toBe('RGB');
    expect(asciiValue(parsedCopy.dataset.get(Tags.LossyImageCompression))).toBe('01');
    const work = mkdtempSync(join(tmpdir(), 'compressed-pixels-'));
    try {
      execFileSync('dcmdjpeg', [join(FIXTURES, fixture), join(work, 'reference.dcm')], { stdio: 'ignore' });
      const reference = (await parseDicomBuffer(readFileSync(join(work, 'reference.dcm')))).pixelValue as Buffer;
      const g = { rows: 240, columns: 320, samplesPerPixel: 3, bytesPerSample: 1 };
      const frameBytes = 240 * 320 * 3;
      const [[bx, by, bw, bh]] = prepared.pixelBoxes as [[number, number, number, number]];
      let maxDifference = 0;
      for (const [f, ranges] of index.frames.entries()) {
        const [offset, length] = ranges[0] as [number, number];
        const frame = decodeRleFrame(copy.subarray(offset, offset + length), g);
        for (let p = 0; p < 240 * 320; p++) {
          const x = p % 320;
          const y = Math.floor(p / 320);
          const inside = x >= bx && x < bx + bw && y >= by && y < by + bh;
          for (let s = 0; s < 3; s++) {
            const v = frame[p * 3 + s] ?? 0;
            if (inside) expect(v).toBe(0);
            else maxDifference = Math.max(maxDifference, Math.abs(v - (reference[f * frameBytes + p * 3 + s] ?? 0)));
          }
        }
      }
      expect(maxDifference).toBeLessThanOrEqual(4);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
