/**
 * Burned-in text found by OCR and blacked out (issue 17), on fixtures this test builds from
 * real ultrasound and secondary-capture files: made-up names, IDs and dates drawn into the
 * pixels with ImageMagick (Debian `imagemagick`, DejaVu Sans) at known places, in several sizes
 * and contrasts. The check after redaction is an independent OCR: the Debian `tesseract`
 * command, not the tesseract.js engine under test. Both tools are installed by .ci/run.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { bufferReader } from '../../../shared/dicom/byteReader';
import { asciiValue, DicomDataset, encodeAsciiValue, uintValue } from '../../../shared/dicom/dataset';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { ParsedDicom,parseDicomBuffer } from '../../../shared/dicom/parser';
import { PixelGeometry,pixelGeometry } from '../../../shared/dicom/pixels/blackout';
import { grayFrame, pixelLook } from '../../../shared/dicom/pixels/grayFrame';
import type { Box } from '../../../shared/dicom/pixels/regions';
import { TesseractDetector } from '../../../shared/dicom/pixels/tesseractDetector';
import { GrayImage, TextDetector, toPgm } from '../../../shared/dicom/pixels/textDetector';
import { Tags } from '../../../shared/dicom/tags';
import { prepareDeidentifiedInstance } from '../../../shared/ingest/deidentifyInstance';
import { SeriesPixelChecks } from '../../../shared/ingest/seriesCheck';
import { encodeWithDataset } from './coreHelpers';

jest.setTimeout(600_000);

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const key = Buffer.from('ocr redaction test key, 32 bytes.');
const detector = new TesseractDetector({ workers: 1 });
const work = mkdtempSync(join(tmpdir(), 'ocr-redaction-'));
afterAll(async () => {
  await detector.close();
  rmSync(work, { recursive: true, force: true });
});

/** Made-up identifiers, written into the header too, so the gate knows them as the source's. */
const PATIENT = { name: 'DOE^JANE', id: '4815162342', birth: '19610314', accession: 'A77305521' };

interface Drawn {
  text: string;
  x: number;
  y: number;
  pointsize: number;
  /** Grey level of the text (0-255) over the image. */
  level: number;
}

/** The text's coverage (0-255 per pixel) as ImageMagick renders it. */
function render(width: number, height: number, d: Drawn): Uint8Array {
  return execFileSync('convert', ['-size', `${width}x${height}`, 'xc:black', '-font', 'DejaVu-Sans', '-pointsize', String(d.pointsize), '-fill', 'white', '-annotate', `+${d.x}+${d.y}`, d.text, '-depth', '8', 'gray:-'], { maxBuffer: 1 << 26 });
}

/** Frame bytes with the text drawn into every sample (mono or RGB, 8 or 16 bits, interleaved or planar). */
function drawInto(frame: Buffer, g: PixelGeometry, littleEndian: boolean, drawn: readonly Drawn[]): void {
  const n = g.rows * g.columns;
  const max = g.bytesPerSample === 1 ? 255 : 0xffff;
  for (const d of drawn) {
    const cover = render(g.columns, g.rows, d);
    for (let p = 0; p < n; p++) {
      const a = (cover[p] ?? 0) / 255;
      if (a === 0) continue;
      for (let s = 0; s < g.samplesPerPixel; s++) {
        const i = g.planar ? s * n + p : p * g.samplesPerPixel + s;
        const target = Math.round((d.level / 255) * max);
        if (g.bytesPerSample === 1) frame[i] = Math.round((frame[i] ?? 0) * (1 - a) + target * a);
        else {
          const v = littleEndian ? frame.readUInt16LE(i * 2) : frame.readUInt16BE(i * 2);
          const out = Math.round(v * (1 - a) + target * a);
          if (littleEndian) frame.writeUInt16LE(out, i * 2);
          else frame.writeUInt16BE(out, i * 2);
        }
      }
    }
  }
}

function setText(ds: DicomDataset, tag: number, vr: string, text: string): void {
  ds.set(tag, { tag, vr, value: encodeAsciiValue(text, vr) });
}
function setUs(ds: DicomDataset, tag: number, v: number, littleEndian: boolean): void {
  const b = Buffer.alloc(2);
  if (littleEndian) b.writeUInt16LE(v);
  else b.writeUInt16BE(v);
  ds.set(tag, { tag, vr: 'US', value: b });
}

/** Nearest-neighbour scaling of one frame to width × height (same sample layout). */
function scaled(frame: Buffer, g: PixelGeometry, width: number, height: number): Buffer {
  const pixelBytes = g.samplesPerPixel * g.bytesPerSample;
  const out = Buffer.alloc(width * height * pixelBytes);
  const plane = g.rows * g.columns * g.bytesPerSample;
  const outPlane = width * height * g.bytesPerSample;
  for (let y = 0; y < height; y++) {
    const sy = Math.floor((y * g.rows) / height);
    for (let x = 0; x < width; x++) {
      const sx = Math.floor((x * g.columns) / width);
      if (g.planar) {
        for (let s = 0; s < g.samplesPerPixel; s++) frame.copy(out, s * outPlane + (y * width + x) * g.bytesPerSample, s * plane + (sy * g.columns + sx) * g.bytesPerSample, s * plane + (sy * g.columns + sx + 1) * g.bytesPerSample);
      } else frame.copy(out, (y * width + x) * pixelBytes, (sy * g.columns + sx) * pixelBytes, (sy * g.columns + sx + 1) * pixelBytes);
    }
  }
  return out;
}

interface Built {
  label: string;
  file: Buffer;
  drawn: Drawn[];
}

/** A real file with the patient's identifiers in its header and `drawn` in the pixels of each of `frames` frames, at width × height. */
async function build(label: string, fixture: string, opts: { width?: number; height?: number; frames?: number; drawn: Drawn[]; burnedInFlag?: string; edit?: (ds: DicomDataset) => void }): Promise<Built> {
  const src: ParsedDicom = await parseDicomBuffer(readFileSync(join(FIXTURES, fixture)));
  const le = src.encoding.littleEndian;
  const ds = new Map(src.dataset);
  const pixelData = src.pixelData;
  if (!pixelData || !src.pixelValue) throw new Error(`${fixture} has no pixel data`);
  const layout = pixelGeometry(ds, le, pixelData);
  if ('reason' in layout) throw new Error(layout.reason);
  const g0 = layout.geometry;
  const first = src.pixelValue.subarray(0, g0.frameBytes);
  const width = opts.width ?? g0.columns;
  const height = opts.height ?? g0.rows;
  const one = width === g0.columns && height === g0.rows ? Buffer.from(first) : scaled(first, g0, width, height);
  const g: PixelGeometry = { ...g0, rows: height, columns: width, frames: opts.frames ?? 1, frameBytes: one.length };
  drawInto(one, g, le, opts.drawn);
  const frames: Buffer[] = [];
  for (let f = 0; f < g.frames; f++) frames.push(one);
  const pixels = Buffer.concat(frames);
  setUs(ds, Tags.Rows, height, le);
  setUs(ds, Tags.Columns, width, le);
  if (g.frames > 1) setText(ds, Tags.NumberOfFrames, 'IS', String(g.frames));
  setText(ds, Tags.PatientName, 'PN', PATIENT.name);
  setText(ds, Tags.PatientID, 'LO', PATIENT.id);
  setText(ds, Tags.PatientBirthDate, 'DA', PATIENT.birth);
  setText(ds, Tags.AccessionNumber, 'SH', PATIENT.accession);
  if (opts.burnedInFlag) setText(ds, Tags.BurnedInAnnotation, 'CS', opts.burnedInFlag);
  opts.edit?.(ds);
  const file = encodeWithDataset({ ...src, pixelData: { ...pixelData, length: pixels.length }, pixelValue: pixels }, ds);
  return { label, file, drawn: opts.drawn };
}

async function redact(file: Buffer, options: { detector?: TextDetector; seriesChecks?: SeriesPixelChecks; mode?: 'redact' | 'allow' } = {}) {
  const prepared = await prepareDeidentifiedInstance(bufferReader(file), {
    deid: { profile: defaultProfile(), key, keyId: 'test' },
    maxHeaderBytes: 1 << 24,
    totalSize: file.length,
    burnedIn: options.mode === 'allow' ? { mode: 'allow' } : { mode: 'redact', ocr: { detector: options.detector ?? detector, sampleFrames: 5, ...(options.seriesChecks ? { seriesChecks: options.seriesChecks } : {}) } },
    readSourceRange: (offset, length) => Promise.resolve(file.subarray(offset, offset + length)),
  });
  const parts: Uint8Array[] = [];
  for await (const c of prepared.output()) parts.push(c);
  const bytes = Buffer.concat(parts);
  return { prepared, bytes, parsed: await parseDicomBuffer(bytes) };
}

/** The first and last frames as the independent OCR gets them: 8-bit RGB as a PPM of the stored samples, else the grey frame as a PGM. */
function imagesForIndependentOcr(p: ParsedDicom): Buffer[] {
  const layout = pixelGeometry(p.dataset, p.encoding.littleEndian, p.pixelData ?? { tag: 0, vr: 'OB', length: 0 });
  if ('reason' in layout) throw new Error(layout.reason);
  const g = layout.geometry;
  const photometric = asciiValue(p.dataset.get(Tags.PhotometricInterpretation));
  const grey = grayFrames(p);
  return [0, g.frames - 1].map((f) => {
    if (g.samplesPerPixel !== 3 || g.bytesPerSample !== 1 || photometric !== 'RGB') return toPgm(grey[f] as GrayImage);
    const frame = (p.pixelValue ?? Buffer.alloc(0)).subarray(f * g.frameBytes, (f + 1) * g.frameBytes);
    const n = g.rows * g.columns;
    const rgb = Buffer.alloc(n * 3);
    for (let i = 0; i < n; i++) for (let s = 0; s < 3; s++) rgb[i * 3 + s] = frame[g.planar ? s * n + i : i * 3 + s] ?? 0;
    return Buffer.concat([Buffer.from(`P6\n${g.columns} ${g.rows}\n255\n`), rgb]);
  });
}

/** Grey frames of a parsed file, as the OCR sees them. */
function grayFrames(p: ParsedDicom): GrayImage[] {
  const layout = pixelGeometry(p.dataset, p.encoding.littleEndian, p.pixelData ?? { tag: 0, vr: 'OB', length: 0 });
  if ('reason' in layout) throw new Error(layout.reason);
  const look = pixelLook(p.dataset, p.encoding.littleEndian, layout.geometry);
  if ('reason' in look) throw new Error(look.reason);
  const g = layout.geometry;
  const out: GrayImage[] = [];
  for (let f = 0; f < g.frames; f++) out.push(grayFrame((p.pixelValue ?? Buffer.alloc(0)).subarray(f * g.frameBytes, (f + 1) * g.frameBytes), g, look.look));
  return out;
}

const squash = (s: string) => s.toUpperCase().replace(/[^A-Z0-9]/g, '');

/** What the Debian tesseract command reads in the image (sparse text and page layout both), squashed. */
function independentOcr(image: Buffer, name: string): string {
  const path = join(work, `${name}.pnm`);
  writeFileSync(path, image);
  const read = (psm: string) => execFileSync('tesseract', [path, 'stdout', '--psm', psm], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return squash(`${read('11')}\n${read('3')}`);
}

/** The drawn values legible in the image, by the independent OCR. */
function legible(image: Buffer, name: string, drawn: readonly Drawn[]): string[] {
  const text = independentOcr(image, name);
  return drawn.map((d) => d.text).filter((t) => text.includes(squash(t)));
}

function inBoxes(boxes: readonly Box[], x: number, y: number): boolean {
  return boxes.some(([bx, by, w, h]) => x >= bx && x < bx + w && y >= by && y < by + h);
}

const values = (level: number, pointsize: number, at: { x: number; y: number }, step: number): Drawn[] => [
  { text: 'DOE, JANE', x: at.x, y: at.y, pointsize, level },
  { text: `ID ${PATIENT.id}`, x: at.x, y: at.y + step, pointsize, level },
  { text: '14/03/1961', x: at.x, y: at.y + 2 * step, pointsize, level },
  { text: `ACC ${PATIENT.accession}`, x: at.x, y: at.y + 3 * step, pointsize, level },
];

const cases: (() => Promise<Built>)[] = [
  // The real ultrasound (Philips EPIQ 5G, 1024x768, 8-bit grey), text in its black margins.
  () => build('US 1024x768 grey, 18 pt white', 'deid/ultrasounds__GREYSCALE_IMAGE.dcm', { drawn: values(255, 18, { x: 20, y: 420 }, 30) }),
  () => build('US 1024x768 grey, 13 pt mid-grey', 'deid/ultrasounds__GREYSCALE_IMAGE.dcm', { drawn: values(150, 13, { x: 830, y: 520 }, 22) }),
  // The real big-endian ultrasound (GE LOGIQ 700, RGB planar) scaled to 640x480.
  () => build('US 640x480 RGB planar big-endian, 16 pt black on yellow', 'pydicom-deb/test_files__ExplVR_BigEnd.dcm', { width: 640, height: 480, drawn: values(0, 16, { x: 40, y: 160 }, 26) }),
  // The real secondary capture (RGB) scaled to 1024x768.
  () => build('SC 1024x768 RGB, 24 pt white over colour bands', 'pydicom-data/SC_rgb_gdcm2k_uncompressed.dcm', { width: 1024, height: 768, drawn: values(255, 24, { x: 30, y: 60 }, 40) }),
  () => build('SC 1024x768 RGB, 14 pt dark on light', 'pydicom-data/SC_rgb_gdcm2k_uncompressed.dcm', { width: 1024, height: 768, drawn: values(0, 14, { x: 700, y: 560 }, 24) }),
  // The real 16-bit RGB secondary capture at 640x480: windowed to 8 bits for OCR.
  () => build('SC 640x480 RGB 16-bit, 20 pt', 'pydicom-data/SC_rgb_16bit.dcm', { width: 640, height: 480, drawn: values(255, 20, { x: 20, y: 300 }, 32) }),
  // A cine clip of the real ultrasound: 12 frames, the same overlay in each, flagged NO.
  () => build('US cine 12 frames, 16 pt, flagged NO', 'deid/ultrasounds__GREYSCALE_IMAGE.dcm', { frames: 12, burnedInFlag: 'NO', drawn: values(255, 16, { x: 20, y: 420 }, 28) }),
];

describe('given real US and SC files with identifiers drawn into their pixels, under the redact policy', () => {
  let drawnTotal = 0;
  let legibleBefore = 0;
  let legibleAfter = 0;
  afterAll(() => {
    // The acceptance figure of issue 17.
    console.log(`drawn identifiers: ${drawnTotal}; legible to the independent OCR before redaction: ${legibleBefore}; after: ${legibleAfter}`);
  });

  it.each(cases.map((c, i) => [i, c] as const))('case %i: after redaction the independent OCR reads none of the drawn values, only pixels inside the boxes changed (to zero), and the copy says BurnedInAnnotation NO with Clean Pixel Data', async (i, make) => {
    const built = await make();
    const source = await parseDicomBuffer(built.file);
    const { prepared, parsed } = await redact(built.file);
    drawnTotal += built.drawn.length;
    const before = imagesForIndependentOcr(source);
    const after = imagesForIndependentOcr(parsed);
    const readBefore = legible(before[0] as Buffer, `case${i}-before`, built.drawn);
    legibleBefore += readBefore.length;
    // The fixture is only a test if the independent OCR can read what was drawn.
    expect(readBefore.length).toBeGreaterThan(0);
    let left: string[] = [];
    for (const [f, image] of after.entries()) left = [...left, ...legible(image, `case${i}-after-${f}`, built.drawn)];
    legibleAfter += left.length;
    expect(left).toEqual([]);

    const boxes = prepared.pixelBoxes ?? [];
    expect(boxes.length).toBeGreaterThan(0);
    expect(prepared.pixelsCleaned).toMatchObject({ boxes: boxes.length, method: 'ocr' });
    const le = parsed.encoding.littleEndian;
    const columns = uintValue(parsed.dataset.get(Tags.Columns), le) ?? 0;
    const layout = pixelGeometry(parsed.dataset, le, parsed.pixelData ?? { tag: 0, vr: 'OB', length: 0 });
    if ('reason' in layout) throw new Error(layout.reason);
    const g = layout.geometry;
    const src = source.pixelValue as Buffer;
    const out = parsed.pixelValue as Buffer;
    expect(out.length).toBe(src.length);
    const n = g.rows * g.columns;
    let changed = 0;
    for (let b = 0; b < g.frames * g.frameBytes; b++) {
      if (src[b] === out[b]) continue;
      changed++;
      const inFrame = b % g.frameBytes;
      const sampleIndex = Math.floor(inFrame / g.bytesPerSample);
      const pixel = g.planar ? sampleIndex % n : Math.floor(sampleIndex / g.samplesPerPixel);
      const x = pixel % columns;
      const y = Math.floor(pixel / columns);
      if (!inBoxes(boxes, x, y) || out[b] !== 0) throw new Error(`byte ${b} (${x},${y}) changed outside the boxes or not to zero`);
    }
    expect(changed).toBeGreaterThan(0);
    expect(asciiValue(parsed.dataset.get(Tags.BurnedInAnnotation))).toBe('NO');
    const codes = (parsed.dataset.get(Tags.DeidentificationMethodCodeSequence)?.items ?? []).map((item) => asciiValue(item.get(Tags.CodeValue)));
    expect(codes).toContain('113101');
    if (g.frames > 1) expect(prepared.pixelsCleaned?.sampledFrames).toEqual([0, 3, 6, 8, 11]);
  });
});

/** The engine under test, counting the frames it is given. */
class Counting implements TextDetector {
  frames = 0;
  detect(image: GrayImage) {
    this.frames++;
    return detector.detect(image);
  }
  close() {
    return Promise.resolve();
  }
}

describe('given real MR slices without BurnedInAnnotation (not a type at risk), under the redact policy with the series check', () => {
  // A real MR slice (dcmjs sample, 512x512, 16-bit, ORIGINAL\\PRIMARY), in a series of its own.
  const slice = (sop: string) => (ds: DicomDataset) => {
    setText(ds, Tags.SOPInstanceUID, 'UI', sop);
    ds.delete(Tags.BurnedInAnnotation);
  };
  const mr = (sop: string, drawn: Drawn[]) => build(`MR 512x512 ${sop}`, 'dcmjs/test__sample-dicom.dcm', { drawn, edit: slice(sop) });
  const overlay = values(255, 16, { x: 12, y: 40 }, 24);

  it('when the first slice of a series shows text, then it and the next slice are redacted (the independent OCR reads none), the copies marked', async () => {
    const checks = new SeriesPixelChecks();
    const counting = new Counting();
    let left: string[] = [];
    for (const sop of ['1.2.826.0.1.3680043.10.1234.1', '1.2.826.0.1.3680043.10.1234.2']) {
      const built = await mr(sop, overlay);
      expect(legible(imagesForIndependentOcr(await parseDicomBuffer(built.file))[0] as Buffer, `mr-${sop}-before`, built.drawn).length).toBeGreaterThan(0);
      const before = counting.frames;
      const { prepared, parsed } = await redact(built.file, { detector: counting, seriesChecks: checks });
      // Each slice is OCR'd (detection and the gate's pass), the series having shown text.
      expect(counting.frames - before).toBe(2);
      expect(prepared.pixelsCleaned).toMatchObject({ method: 'ocr', frames: 1 });
      expect(asciiValue(parsed.dataset.get(Tags.BurnedInAnnotation))).toBe('NO');
      left = [...left, ...legible(imagesForIndependentOcr(parsed)[0] as Buffer, `mr-${sop}-after`, built.drawn)];
    }
    expect(left).toEqual([]);
  });

  it('when the first slice reads clean, then the rest of the series is trusted without OCR, and every copy is the one the allow policy writes (unmarked, same bytes)', async () => {
    const checks = new SeriesPixelChecks();
    const counting = new Counting();
    const sops = ['1.2.826.0.1.3680043.10.1234.11', '1.2.826.0.1.3680043.10.1234.12', '1.2.826.0.1.3680043.10.1234.13'];
    let sampleFrames = 0;
    for (const [i, sop] of sops.entries()) {
      const built = await mr(sop, []);
      const { prepared, bytes, parsed } = await redact(built.file, { detector: counting, seriesChecks: checks });
      // The first slice is the series' sample; the others cost no OCR.
      if (i === 0) sampleFrames = counting.frames;
      expect(sampleFrames).toBeGreaterThan(0);
      expect(counting.frames).toBe(sampleFrames);
      expect(prepared.pixelsCleaned).toBeUndefined();
      expect(parsed.dataset.has(Tags.BurnedInAnnotation)).toBe(false);
      expect(bytes.equals((await redact(built.file, { mode: 'allow' })).bytes)).toBe(true);
    }
    // Without the series check (tools, benches), the unflagged MR is not OCR'd at all.
    const alone = new Counting();
    await redact((await mr(sops[0] as string, overlay)).file, { detector: alone });
    expect(alone.frames).toBe(0);
  });
});
