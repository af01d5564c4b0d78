/**
 * Burned-in text on compressed pixel data (issue 17): fixtures built here from the real
 * ultrasound (grey, and as RGB), names, IDs and dates drawn with ImageMagick, then compressed
 * by Debian's dcmtk (dcmcjpeg, dcmcjpls, dcmcrle) and gdcm (gdcmconv --j2k). After redaction:
 * the copy is RLE Lossless; dcmtk's own RLE decoder reads it; the independent OCR (Debian
 * `tesseract`) reads none of the drawn values; outside the boxes every pixel equals the source
 * as an independent decoder (dcmtk, gdcm) gives it (exactly for lossless sources; for lossy
 * ones, exactly as our decoder gives the source, and within the decoders' rounding of the
 * independent one); frames and geometry are the source's; dciodvfy finds no more errors than
 * in the source. All tools are installed by .ci/run.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { bufferReader } from '../../../shared/dicom/byteReader';
import { asciiValue, DicomDataset, encodeAsciiValue, uintValue } from '../../../shared/dicom/dataset';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { ParsedDicom, parseDicomBuffer } from '../../../shared/dicom/parser';
import { decodeFrame, RLE_LOSSLESS } from '../../../shared/dicom/pixels/codecs';
import type { Box } from '../../../shared/dicom/pixels/regions';
import { TesseractDetector } from '../../../shared/dicom/pixels/tesseractDetector';
import { Tags } from '../../../shared/dicom/tags';
import { decodedGeometry } from '../../../shared/ingest/compressedPixels';
import { prepareDeidentifiedInstance } from '../../../shared/ingest/deidentifyInstance';
import { dciodvfyErrors } from '../../../tools/dicomTools';
import { fragments } from '../encapsulated';
import { encodeWithDataset } from './coreHelpers';

jest.setTimeout(900_000);

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const key = Buffer.from('ocr compressed test key, 32 bytes');
const detector = new TesseractDetector({ workers: 1 });
const work = mkdtempSync(join(tmpdir(), 'ocr-compressed-'));
afterAll(async () => {
  await detector.close();
  rmSync(work, { recursive: true, force: true });
});

const PATIENT = { name: 'DOE^JANE', id: '4815162342', birth: '19610314', accession: 'A77305521' };
const DRAWN = ['DOE, JANE', `ID ${PATIENT.id}`, '14/03/1961', `ACC ${PATIENT.accession}`];

/** The text's coverage (0-255 per pixel), as ImageMagick renders it. */
function render(width: number, height: number, text: string, x: number, y: number, pointsize: number): Uint8Array {
  return execFileSync('convert', ['-size', `${width}x${height}`, 'xc:black', '-font', 'DejaVu-Sans', '-pointsize', String(pointsize), '-fill', 'white', '-annotate', `+${x}+${y}`, text, '-depth', '8', 'gray:-'], { maxBuffer: 1 << 26 });
}

function setText(ds: DicomDataset, tag: number, vr: string, text: string): void {
  ds.set(tag, { tag, vr, value: encodeAsciiValue(text, vr) });
}
function setUs(ds: DicomDataset, tag: number, v: number): void {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  ds.set(tag, { tag, vr: 'US', value: b });
}

/**
 * The real 1024x768 grey ultrasound as a native file of `frames` frames with the identifiers
 * drawn in its margin (each frame's text shifted a little, as a clip's would not be: the union
 * still covers them), grey or as RGB (the grey in every channel, text in yellow).
 */
async function nativeFixture(opts: { rgb: boolean; frames: number; pointsize: number }): Promise<Buffer> {
  const src: ParsedDicom = await parseDicomBuffer(readFileSync(join(FIXTURES, 'deid', 'ultrasounds__GREYSCALE_IMAGE.dcm')));
  const ds = new Map(src.dataset);
  const width = 1024;
  const height = 768;
  const grey = src.pixelValue as Buffer;
  const cover = new Uint8Array(width * height);
  DRAWN.forEach((text, i) => {
    const c = render(width, height, text, 20, 420 + i * (opts.pointsize + 12), opts.pointsize);
    for (let p = 0; p < c.length; p++) cover[p] = Math.max(cover[p] ?? 0, c[p] ?? 0);
  });
  const spp = opts.rgb ? 3 : 1;
  const frame = Buffer.alloc(width * height * spp);
  for (let p = 0; p < width * height; p++) {
    const a = (cover[p] ?? 0) / 255;
    const g = grey[p] ?? 0;
    if (spp === 1) frame[p] = Math.round(g * (1 - a) + 255 * a);
    else [255, 255, 0].forEach((t, s) => (frame[p * 3 + s] = Math.round(g * (1 - a) + t * a)));
  }
  const pixels = Buffer.concat(Array.from({ length: opts.frames }, () => frame));
  if (opts.rgb) {
    setUs(ds, Tags.SamplesPerPixel, 3);
    setUs(ds, Tags.PlanarConfiguration, 0);
    setText(ds, Tags.PhotometricInterpretation, 'CS', 'RGB');
  }
  if (opts.frames > 1) {
    setText(ds, Tags.NumberOfFrames, 'IS', String(opts.frames));
    // The multi-frame ultrasound class, whose module asks for the frame increment pointer.
    setText(ds, Tags.SOPClassUID, 'UI', '1.2.840.10008.5.1.4.1.1.3.1');
    ds.set(Tags.FrameIncrementPointer, { tag: Tags.FrameIncrementPointer, vr: 'AT', value: Buffer.from([0x18, 0x00, 0x63, 0x10]) });
    setText(ds, Tags.FrameTime, 'DS', '33.3');
  }
  setText(ds, Tags.PatientName, 'PN', PATIENT.name);
  setText(ds, Tags.PatientID, 'LO', PATIENT.id);
  setText(ds, Tags.PatientBirthDate, 'DA', PATIENT.birth);
  setText(ds, Tags.AccessionNumber, 'SH', PATIENT.accession);
  return encodeWithDataset({ ...src, pixelData: { ...(src.pixelData ?? { tag: Tags.PixelData, vr: 'OB', length: 0 }), length: pixels.length }, pixelValue: pixels }, ds);
}

interface Case {
  label: string;
  rgb: boolean;
  frames: number;
  pointsize: number;
  /** The tool and its options: (input, output) => argv. */
  compress: (input: string, output: string) => [string, string[]];
  transferSyntaxUid: string;
  lossy: boolean;
  /** The independent decoder of the source: (input, output) => argv. */
  decode: (input: string, output: string) => [string, string[]];
  photometric: string;
}

const dcmdjpeg = (i: string, o: string): [string, string[]] => ['dcmdjpeg', [i, o]];
const gdcmRaw = (i: string, o: string): [string, string[]] => ['gdcmconv', ['--raw', i, o]];
const cases: Case[] = [
  { label: 'JPEG baseline (lossy) US grey', rgb: false, frames: 1, pointsize: 18, compress: (i, o) => ['dcmcjpeg', ['+eb', i, o]], transferSyntaxUid: '1.2.840.10008.1.2.4.50', lossy: true, decode: dcmdjpeg, photometric: 'MONOCHROME2' },
  { label: 'JPEG baseline (lossy) US RGB, YBR_FULL_422', rgb: true, frames: 1, pointsize: 18, compress: (i, o) => ['dcmcjpeg', ['+eb', i, o]], transferSyntaxUid: '1.2.840.10008.1.2.4.50', lossy: true, decode: dcmdjpeg, photometric: 'RGB' },
  { label: 'JPEG lossless SV1 US cine of 4 frames', rgb: false, frames: 4, pointsize: 16, compress: (i, o) => ['dcmcjpeg', [i, o]], transferSyntaxUid: '1.2.840.10008.1.2.4.70', lossy: false, decode: dcmdjpeg, photometric: 'MONOCHROME2' },
  { label: 'JPEG lossless process 14 US grey', rgb: false, frames: 1, pointsize: 14, compress: (i, o) => ['dcmcjpeg', ['+el', i, o]], transferSyntaxUid: '1.2.840.10008.1.2.4.57', lossy: false, decode: dcmdjpeg, photometric: 'MONOCHROME2' },
  { label: 'JPEG-LS lossless US RGB', rgb: true, frames: 1, pointsize: 18, compress: (i, o) => ['dcmcjpls', [i, o]], transferSyntaxUid: '1.2.840.10008.1.2.4.80', lossy: false, decode: (i, o) => ['dcmdjpls', [i, o]], photometric: 'RGB' },
  { label: 'JPEG-LS near-lossless US grey', rgb: false, frames: 1, pointsize: 18, compress: (i, o) => ['dcmcjpls', ['+en', i, o]], transferSyntaxUid: '1.2.840.10008.1.2.4.81', lossy: true, decode: (i, o) => ['dcmdjpls', [i, o]], photometric: 'MONOCHROME2' },
  { label: 'JPEG 2000 lossless US RGB (YBR_RCT)', rgb: true, frames: 1, pointsize: 18, compress: (i, o) => ['gdcmconv', ['--j2k', i, o]], transferSyntaxUid: '1.2.840.10008.1.2.4.90', lossy: false, decode: gdcmRaw, photometric: 'RGB' },
  { label: 'JPEG 2000 lossy US grey', rgb: false, frames: 1, pointsize: 18, compress: (i, o) => ['gdcmconv', ['--j2k', '--lossy', '-q', '40', i, o]], transferSyntaxUid: '1.2.840.10008.1.2.4.91', lossy: true, decode: gdcmRaw, photometric: 'MONOCHROME2' },
  { label: 'RLE Lossless US cine of 3 frames, RGB', rgb: true, frames: 3, pointsize: 16, compress: (i, o) => ['dcmcrle', [i, o]], transferSyntaxUid: RLE_LOSSLESS, lossy: false, decode: (i, o) => ['dcmdrle', [i, o]], photometric: 'RGB' },
];

const squash = (s: string) => s.toUpperCase().replace(/[^A-Z0-9]/g, '');

/** The drawn values that Debian's tesseract reads in frame `f` of a native 8-bit file (sparse text and page layout). */
function legible(p: ParsedDicom, f: number, name: string): string[] {
  const rows = uintValue(p.dataset.get(Tags.Rows), true) ?? 0;
  const columns = uintValue(p.dataset.get(Tags.Columns), true) ?? 0;
  const spp = uintValue(p.dataset.get(Tags.SamplesPerPixel), true) ?? 1;
  const frameBytes = rows * columns * spp;
  const frame = (p.pixelValue as Buffer).subarray(f * frameBytes, (f + 1) * frameBytes);
  const path = join(work, `${name}.pnm`);
  writeFileSync(path, Buffer.concat([Buffer.from(`${spp === 3 ? 'P6' : 'P5'}\n${columns} ${rows}\n255\n`), frame]));
  const read = (psm: string) => execFileSync('tesseract', [path, 'stdout', '--psm', psm], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const text = squash(`${read('11')}\n${read('3')}`);
  return DRAWN.filter((t) => text.includes(squash(t)));
}


function inBoxes(boxes: readonly Box[], x: number, y: number): boolean {
  return boxes.some(([bx, by, w, h]) => x >= bx && x < bx + w && y >= by && y < by + h);
}

function tool([command, args]: [string, string[]]): void {
  execFileSync(command, args, { stdio: 'ignore' });
}

describe('given real US files with identifiers drawn into their pixels, compressed by dcmtk and gdcm, under the redact policy', () => {
  let drawnTotal = 0;
  let legibleAfter = 0;
  afterAll(() => console.log(`compressed fixtures: drawn identifiers ${drawnTotal}; legible to the independent OCR after redaction: ${legibleAfter}`));

  it.each(cases.map((c) => [c.label, c] as const))('%s: the copy is RLE Lossless, holds none of the drawn values, and is unchanged outside the boxes', async (label, c) => {
    const slug = label.replace(/[^a-z0-9]+/gi, '-');
    const nativePath = join(work, `${slug}-native.dcm`);
    const sourcePath = join(work, `${slug}-source.dcm`);
    const referencePath = join(work, `${slug}-reference.dcm`);
    const outputPath = join(work, `${slug}-output.dcm`);
    const decodedPath = join(work, `${slug}-output-native.dcm`);
    writeFileSync(nativePath, await nativeFixture(c));
    tool(c.compress(nativePath, sourcePath));
    tool(c.decode(sourcePath, referencePath));
    const sourceBytes = readFileSync(sourcePath);
    const source = await parseDicomBuffer(sourceBytes);
    expect(source.transferSyntaxUid).toBe(c.transferSyntaxUid);
    const reference = await parseDicomBuffer(readFileSync(referencePath));

    const prepared = await prepareDeidentifiedInstance(bufferReader(sourceBytes), {
      deid: { profile: defaultProfile(), key, keyId: 'test' },
      maxHeaderBytes: 1 << 24,
      totalSize: sourceBytes.length,
      burnedIn: { mode: 'redact', ocr: { detector, sampleFrames: 5 } },
      readSourceRange: (offset, length) => Promise.resolve(sourceBytes.subarray(offset, offset + length)),
    });
    const parts: Uint8Array[] = [];
    for await (const chunk of prepared.output()) parts.push(chunk);
    writeFileSync(outputPath, Buffer.concat(parts));
    expect(prepared.outputTs).toBe(RLE_LOSSLESS);
    expect(prepared.pixelsCleaned).toMatchObject({ method: 'ocr', frames: c.frames, transcodedTo: RLE_LOSSLESS });
    const boxes = prepared.pixelBoxes ?? [];
    expect(boxes.length).toBeGreaterThan(0);

    // Read by dcmtk: its dump, and its own RLE decoder.
    execFileSync('dcmdump', [outputPath], { stdio: 'ignore' });
    tool(['dcmdrle', [outputPath, decodedPath]]);
    const output = await parseDicomBuffer(readFileSync(outputPath));
    const decoded = await parseDicomBuffer(readFileSync(decodedPath));
    expect(output.transferSyntaxUid).toBe(RLE_LOSSLESS);
    const ds = output.dataset;
    const str = (tag: number) => asciiValue(ds.get(tag));
    expect(str(Tags.PhotometricInterpretation)).toBe(c.photometric);
    expect(str(Tags.NumberOfFrames) ?? '1').toBe(String(c.frames));
    for (const tag of [Tags.Rows, Tags.Columns, Tags.SamplesPerPixel, Tags.BitsAllocated]) expect(uintValue(ds.get(tag), true)).toBe(uintValue(source.dataset.get(tag), true));
    if (c.rgb) expect(uintValue(ds.get(Tags.PlanarConfiguration), true)).toBe(0);
    expect(str(Tags.BurnedInAnnotation)).toBe('NO');
    // A lossy source stays marked lossy, with its method; a lossless one keeps what it said.
    const sourceSays = (tag: number) => asciiValue(source.dataset.get(tag));
    expect(str(Tags.LossyImageCompression)).toBe(c.lossy ? '01' : sourceSays(Tags.LossyImageCompression));
    expect(str(Tags.LossyImageCompressionMethod)).toBe(c.lossy ? (sourceSays(Tags.LossyImageCompressionMethod) ?? 'ISO_15444_1') : undefined);
    if (c.lossy) expect(str(Tags.LossyImageCompressionRatio)).toBe(sourceSays(Tags.LossyImageCompressionRatio));
    const codes = (ds.get(Tags.DeidentificationMethodCodeSequence)?.items ?? []).map((item) => asciiValue(item.get(Tags.CodeValue)));
    expect(codes).toContain('113101');

    // None of the drawn values legible in the first and last frames as dcmtk decodes the copy; all read in the source.
    drawnTotal += DRAWN.length;
    expect(legible(reference, 0, `${slug}-before`).length).toBeGreaterThan(0);
    const left = [...legible(decoded, 0, `${slug}-after-0`), ...(c.frames > 1 ? legible(decoded, c.frames - 1, `${slug}-after-last`) : [])];
    legibleAfter += left.length;
    expect(left).toEqual([]);

    // Outside the boxes, the source's pixels as decoded; inside, zero.
    const layout = decodedGeometry(source.dataset, true, c.transferSyntaxUid);
    if ('reason' in layout) throw new Error(layout.reason);
    const g = layout.geometry;
    const ref = reference.pixelValue as Buffer;
    const out = decoded.pixelValue as Buffer;
    expect(out.length).toBeGreaterThanOrEqual(g.frames * g.frameBytes);
    let changed = 0;
    let maxDifference = 0;
    for (let b = 0; b < g.frames * g.frameBytes; b++) {
      const pixel = Math.floor((b % g.frameBytes) / g.samplesPerPixel);
      const x = pixel % g.columns;
      const y = Math.floor(pixel / g.columns);
      if (inBoxes(boxes, x, y)) {
        if (out[b] !== 0) throw new Error(`byte ${b} (${x},${y}) inside a box is not zero`);
        changed++;
        continue;
      }
      maxDifference = Math.max(maxDifference, Math.abs((out[b] ?? 0) - (ref[b] ?? 0)));
    }
    expect(changed).toBeGreaterThan(0);
    if (c.lossy) {
      // The source as our decoder gives it (what was redacted): equal outside the boxes, byte for byte.
      const ours = await decodeFrame(c.transferSyntaxUid, Buffer.concat(fragments(source.pixelValue as Buffer)), { ...g, photometric: asciiValue(source.dataset.get(Tags.PhotometricInterpretation)) });
      for (let b = 0; b < g.frameBytes; b++) {
        const pixel = Math.floor(b / g.samplesPerPixel);
        if (!inBoxes(boxes, pixel % g.columns, Math.floor(pixel / g.columns)) && ours[b] !== out[b]) throw new Error(`byte ${b} outside the boxes differs from the decoded source`);
      }
    }
    // Lossless sources: exactly the source. Lossy: the decoders (libjpeg-turbo, IJG, CharLS, OpenJPEG) round alike within a few levels.
    if (c.lossy) expect(maxDifference).toBeLessThanOrEqual(4);
    else expect(maxDifference).toBe(0);

    // dciodvfy: no more errors in the copy than in the source.
    const [before, after] = [await dciodvfyErrors(sourcePath), await dciodvfyErrors(outputPath)];
    if (after.errors > before.errors) console.log(`${label}: dciodvfy source ${before.lines.join(' | ')}; copy ${after.lines.join(' | ')}`);
    expect(after.errors).toBeLessThanOrEqual(before.errors);
  });
});
