/**
 * OCR of burned-in text (issue 17): the cost of the redact policy per frame and per cine clip,
 * against the ingestion core on the same file without OCR (policy `allow`), in the same run.
 *
 * Files are made from the bundled real samples: the Philips ultrasound scaled to 640x480 (grey,
 * one frame, and a cine clip of BENCH_OCR_CINE_FRAMES frames), and the RGB secondary capture
 * scaled to 1024x768. Each is de-identified whole (output read to the end) `repeats` times per
 * policy, alternating; the medians are compared. OCR runs on one engine worker (OCR_WORKERS=1),
 * so the per-frame figure is one worker's; the engine's start-up is paid before timing.
 *
 * Then an unflagged CT series under the series check (one slice OCR'd, the rest trusted once
 * it reads clean), per slice against the same series without OCR.
 *
 * Then whether OCR blocks other files (issue 17): CT slices arrive behind a burst of ultrasound
 * files to OCR, through an ingestion limiter, with the OCR run in the files' slots (as before)
 * and outside them on the OCR queue (as the ingestion does now), against the CT slices alone.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { bufferReader } from '../shared/dicom/byteReader';
import { encodeAsciiValue } from '../shared/dicom/dataset';
import { defaultProfile } from '../shared/dicom/deid/profile';
import { parseDicomBuffer } from '../shared/dicom/parser';
import { PixelGeometry,pixelGeometry } from '../shared/dicom/pixels/blackout';
import { TesseractDetector } from '../shared/dicom/pixels/tesseractDetector';
import { Tags } from '../shared/dicom/tags';
import { encodeDataset, encodeFileMeta, encodePixelDataHeader } from '../shared/dicom/writer';
import type { BurnedInPolicy } from '../shared/ingest/burnedIn';
import { prepareDeidentifiedInstance } from '../shared/ingest/deidentifyInstance';
import { Limiter } from '../shared/ingest/limiter';
import { OcrQueue } from '../shared/ingest/ocrQueue';
import { SeriesPixelChecks } from '../shared/ingest/seriesCheck';
import { ctSliceBytes } from './generate';
import { percentile, round } from './stats';

export interface OcrCase {
  name: string;
  width: number;
  height: number;
  frames: number;
  /** Frames OCR'd (sampled), each twice when there is text (detection and the gate), once when not. */
  framesOcrd: number;
  withoutOcrMs: number;
  withOcrMs: number;
  /** withOcrMs / withoutOcrMs. */
  ratio: number;
  /** (withOcrMs - withoutOcrMs) / OCR passes (framesOcrd × 2 with text, × 1 without). */
  ocrMsPerFramePass: number;
  boxes: number;
  /** The source's transfer syntax, for the compressed cases (decoded, OCR'd, written as RLE Lossless). */
  transferSyntaxUid?: string;
}

/** CT latency (arrival to output written) in one run of the burst. */
export interface CtLatency {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** When the last ultrasound file of the burst was done, from the start of the run (0: none). */
  ocrBurstSeconds: number;
}

/** Does OCR block other files: CT slices arriving behind a burst of ultrasound files to OCR. */
export interface OcrBlockingResult {
  note: string;
  ingestionSlots: number;
  ocrWorkers: number;
  ultrasoundFiles: number;
  ctFiles: number;
  ctIntervalMs: number;
  /** No OCR burst: the CT slices alone. */
  ctAlone: CtLatency;
  /** The burst OCR'd in the files' ingestion slots (before issue 17's OCR queue). */
  ocrInSlot: CtLatency;
  /** The burst OCR'd outside the slots, on the OCR queue (as the ingestion does now). */
  ocrOutsideSlot: CtLatency;
}

/**
 * An unflagged CT series (no BurnedInAnnotation, not a type at risk) under the redact policy
 * with the series check: its first slice OCR'd, the rest trusted once it reads clean.
 */
export interface OcrSeriesResult {
  note: string;
  slices: number;
  /** The series de-identified slice by slice under policy `allow`: ms per slice (median of repeats). */
  withoutOcrMsPerSlice: number;
  /** The same under `redact` with a fresh series check each repeat: ms per slice, the sample's OCR included. */
  withSeriesCheckMsPerSlice: number;
  /** withSeriesCheckMsPerSlice / withoutOcrMsPerSlice. */
  ratio: number;
  /** The first slice (the sample) under `redact`, against the same slice under `allow`. */
  sampleMs: number;
  sampleWithoutOcrMs: number;
  /** Slices OCR'd per series (1: the sample only). */
  slicesOcrd: number;
}

export interface OcrResult {
  note: string;
  repeats: number;
  sampleFrames: number;
  cases: OcrCase[];
  series: OcrSeriesResult;
  blocking: OcrBlockingResult;
}

function scaled(frame: Buffer, g: PixelGeometry, width: number, height: number): Buffer {
  const pixelBytes = g.samplesPerPixel * g.bytesPerSample;
  const out = Buffer.alloc(width * height * pixelBytes);
  for (let y = 0; y < height; y++) {
    const sy = Math.floor((y * g.rows) / height);
    for (let x = 0; x < width; x++) {
      const sx = Math.floor((x * g.columns) / width);
      frame.copy(out, (y * width + x) * pixelBytes, (sy * g.columns + sx) * pixelBytes, (sy * g.columns + sx + 1) * pixelBytes);
    }
  }
  return out;
}

/** A sample resized to width × height with `frames` frames (the same frame repeated), explicit VR little endian, interleaved. */
async function resized(sample: string, width: number, height: number, frames: number): Promise<Buffer> {
  const src = await parseDicomBuffer(fs.readFileSync(sample));
  if (!src.pixelData || !src.pixelValue || !src.encoding.littleEndian) throw new Error(`${path.basename(sample)}: not a little endian native sample`);
  const layout = pixelGeometry(src.dataset, true, src.pixelData);
  if ('reason' in layout || layout.geometry.planar) throw new Error(`${path.basename(sample)}: not an interleaved native sample`);
  const one = scaled(src.pixelValue.subarray(0, layout.geometry.frameBytes), layout.geometry, width, height);
  const ds = new Map(src.dataset);
  const us = (tag: number, v: number) => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    ds.set(tag, { tag, vr: 'US', value: b });
  };
  us(Tags.Rows, height);
  us(Tags.Columns, width);
  if (frames > 1) ds.set(Tags.NumberOfFrames, { tag: Tags.NumberOfFrames, vr: 'IS', value: encodeAsciiValue(String(frames), 'IS') });
  const pixels = Buffer.concat(Array.from({ length: frames }, () => one));
  const sopClass = ds.get(Tags.SOPClassUID)?.value ?? Buffer.alloc(0);
  const sopInstance = ds.get(Tags.SOPInstanceUID)?.value ?? Buffer.alloc(0);
  const text = (v: Uint8Array) => Buffer.from(v).toString('latin1').replace(/[\0 ]+$/, '');
  return Buffer.concat([encodeFileMeta(text(sopClass), text(sopInstance), src.transferSyntaxUid), encodeDataset(ds, src.encoding), encodePixelDataHeader(src.pixelData.tag, src.pixelData.vr, pixels.length, src.encoding), pixels]);
}

/** The file compressed by Debian's dcmtk (`dcmcjpeg` with `args`), as a hospital archive would hold it. */
function compressed(file: Buffer, args: string[]): Buffer {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-ocr-'));
  try {
    fs.writeFileSync(path.join(dir, 'in.dcm'), file);
    execFileSync('dcmcjpeg', [...args, path.join(dir, 'in.dcm'), path.join(dir, 'out.dcm')], { stdio: 'ignore' });
    return fs.readFileSync(path.join(dir, 'out.dcm'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function deidentify(file: Buffer, burnedIn: BurnedInPolicy, ocrStage?: <T>(run: () => Promise<T>) => Promise<T>): Promise<{ ms: number; boxes: number; sampled: number }> {
  const started = process.hrtime.bigint();
  const prepared = await prepareDeidentifiedInstance(bufferReader(file), {
    deid: { profile: defaultProfile(), key: Buffer.from('vna-bench-ocr-key-not-for-production-use'), keyId: 'bench' },
    maxHeaderBytes: 1 << 24,
    totalSize: file.length,
    burnedIn,
    readSourceRange: (offset, length) => Promise.resolve(file.subarray(offset, offset + length)),
    ...(ocrStage ? { ocrStage } : {}),
  });
  for await (const chunk of prepared.output()) void chunk;
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  return { ms, boxes: prepared.pixelsCleaned?.boxes ?? 0, sampled: prepared.pixelsCleaned?.sampledFrames?.length ?? 0 };
}

/** An unflagged CT series of `count` slices, de-identified slice by slice with and without the redact policy's series check, `repeats` times alternating. */
async function seriesRun(detector: TesseractDetector, sampleFrames: number, repeats: number, count: number): Promise<OcrSeriesResult> {
  const slices = Array.from({ length: count }, (_, i) => ctSliceBytes({ seed: 18, study: 1, instance: i + 1 }));
  const without: number[] = [];
  const withCheck: number[] = [];
  const sample: number[] = [];
  const sampleWithout: number[] = [];
  let ocrd = 0;
  for (let r = 0; r < repeats; r++) {
    let total = 0;
    for (const [i, f] of slices.entries()) {
      const { ms } = await deidentify(f, { mode: 'allow' });
      if (i === 0) sampleWithout.push(ms);
      total += ms;
    }
    without.push(total / count);
    const seriesChecks = new SeriesPixelChecks();
    const counting = { frames: 0, detect: (image: Parameters<TesseractDetector['detect']>[0]) => ((counting.frames += 1), detector.detect(image)), close: () => Promise.resolve() };
    total = 0;
    for (const [i, f] of slices.entries()) {
      const before = counting.frames;
      const { ms } = await deidentify(f, { mode: 'redact', ocr: { detector: counting, sampleFrames, seriesChecks } });
      if (counting.frames > before) ocrd++;
      if (i === 0) sample.push(ms);
      total += ms;
    }
    withCheck.push(total / count);
  }
  const a = percentile(without, 50);
  const b = percentile(withCheck, 50);
  return {
    note: `${count} CT 512x512 slices of one series without BurnedInAnnotation, de-identified one after the other (core only, files in memory); median of ${repeats} repeats, a fresh series check each`,
    slices: count,
    withoutOcrMsPerSlice: round(a, 2),
    withSeriesCheckMsPerSlice: round(b, 2),
    ratio: round(b / a, 2),
    sampleMs: round(percentile(sample, 50), 1),
    sampleWithoutOcrMs: round(percentile(sampleWithout, 50), 1),
    slicesOcrd: round(ocrd / repeats, 2),
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * One run: the ultrasound files land at once, then CT slices arrive every `intervalMs`; each
 * file goes through an ingestion limiter of `slots` as the ingestion does (core only, files in
 * memory). `mode` says where the OCR runs: none (no burst), in the file's slot, or outside it
 * on the OCR queue. Returns the CT latencies.
 */
async function blockingRun(mode: 'none' | 'inSlot' | 'outside', us: Buffer[], ct: Buffer[], slots: number, intervalMs: number, redact: BurnedInPolicy): Promise<CtLatency> {
  const limiter = new Limiter(slots);
  const queue = new OcrQueue({ running: 1, maxQueued: 1024, maxWaitMs: 480_000 });
  const ingest = (file: Buffer, key: string) =>
    limiter.run(async (_release, outside) => {
      await deidentify(file, redact, mode === 'outside' ? <T>(run: () => Promise<T>) => outside(() => queue.run(key, run)) : undefined);
    });
  const t0 = performance.now();
  const burst = mode === 'none' ? [] : us.map((f, i) => ingest(f, `us${i}`).then(() => performance.now() - t0));
  const latencies: Promise<number>[] = [];
  for (const [i, f] of ct.entries()) {
    await sleep(intervalMs);
    const arrived = performance.now();
    latencies.push(ingest(f, `ct${i}`).then(() => performance.now() - arrived));
  }
  const ms = await Promise.all(latencies);
  const burstMs = await Promise.all(burst);
  return { p50Ms: round(percentile(ms, 50), 1), p99Ms: round(percentile(ms, 99), 1), maxMs: round(Math.max(...ms), 1), ocrBurstSeconds: round(Math.max(0, ...burstMs) / 1000, 1) };
}

export async function runOcrScenario(projectRoot: string, log: (m: string) => void): Promise<OcrResult> {
  const fixtures = path.join(projectRoot, 'test', 'fixtures', 'dicom');
  const repeats = Number(process.env.BENCH_OCR_REPEATS ?? 5);
  const cineFrames = Number(process.env.BENCH_OCR_CINE_FRAMES ?? 60);
  const sampleFrames = 5;
  const us = path.join(fixtures, 'deid', 'ultrasounds__GREYSCALE_IMAGE.dcm');
  const sc = path.join(fixtures, 'pydicom-data', 'SC_rgb_gdcm2k_uncompressed.dcm');
  const files: { name: string; width: number; height: number; frames: number; file: Buffer; transferSyntaxUid?: string }[] = [
    { name: 'US 640x480 grey, 1 frame', width: 640, height: 480, frames: 1, file: await resized(us, 640, 480, 1) },
    { name: 'SC 1024x768 RGB, 1 frame', width: 1024, height: 768, frames: 1, file: await resized(sc, 1024, 768, 1) },
    { name: `US cine 640x480 grey, ${cineFrames} frames`, width: 640, height: 480, frames: cineFrames, file: await resized(us, 640, 480, cineFrames) },
    // The same files compressed: every frame decoded, and written as RLE Lossless when text is found.
    { name: 'US 640x480 grey, 1 frame, JPEG baseline', width: 640, height: 480, frames: 1, file: compressed(await resized(us, 640, 480, 1), ['+eb']), transferSyntaxUid: '1.2.840.10008.1.2.4.50' },
    { name: `US cine 640x480 grey, ${cineFrames} frames, JPEG lossless SV1`, width: 640, height: 480, frames: cineFrames, file: compressed(await resized(us, 640, 480, cineFrames), []), transferSyntaxUid: '1.2.840.10008.1.2.4.70' },
  ];
  const detector = new TesseractDetector({ workers: 1 });
  const redact: BurnedInPolicy = { mode: 'redact', ocr: { detector, sampleFrames } };
  const cases: OcrCase[] = [];
  let blocking: OcrBlockingResult | undefined;
  let series: OcrSeriesResult | undefined;
  try {
    // The engine starts once per process: paid here, not in the figures.
    await deidentify(files[0]?.file ?? Buffer.alloc(0), redact);
    for (const f of files) {
      const without: number[] = [];
      const withOcr: number[] = [];
      let boxes = 0;
      let sampled = 0;
      for (let i = 0; i < repeats; i++) {
        without.push((await deidentify(f.file, { mode: 'allow' })).ms);
        const r = await deidentify(f.file, redact);
        withOcr.push(r.ms);
        boxes = r.boxes;
        sampled = r.sampled;
      }
      const a = percentile(without, 50);
      const b = percentile(withOcr, 50);
      const c: OcrCase = { name: f.name, width: f.width, height: f.height, frames: f.frames, framesOcrd: sampled, withoutOcrMs: round(a, 1), withOcrMs: round(b, 1), ratio: round(b / a, 1), ocrMsPerFramePass: round((b - a) / Math.max(1, sampled * (boxes > 0 ? 2 : 1)), 1), boxes, ...(f.transferSyntaxUid ? { transferSyntaxUid: f.transferSyntaxUid } : {}) };
      log(`ocr: ${c.name}: ${c.withoutOcrMs} ms without OCR, ${c.withOcrMs} ms with (x${c.ratio}); ${c.ocrMsPerFramePass} ms per frame per OCR pass; ${c.boxes} boxes`);
      cases.push(c);
    }
    series = await seriesRun(detector, sampleFrames, repeats, Number(process.env.BENCH_OCR_SERIES ?? 100));
    log(`ocr: unflagged CT series of ${series.slices} slices with the series check: ${series.withSeriesCheckMsPerSlice} ms per slice against ${series.withoutOcrMsPerSlice} without OCR (x${series.ratio}); the sample ${series.sampleMs} ms against ${series.sampleWithoutOcrMs}; ${series.slicesOcrd} slice(s) OCR'd`);
    // Does OCR block other files? CT slices behind a burst of ultrasound files, three ways.
    const ultrasoundFiles = Number(process.env.BENCH_OCR_BURST ?? 4);
    const ctFiles = Number(process.env.BENCH_OCR_CT ?? 40);
    const slots = 4;
    const ctIntervalMs = 50;
    const burstFiles = Array.from({ length: ultrasoundFiles }, () => files[0]?.file ?? Buffer.alloc(0));
    const cts = Array.from({ length: ctFiles }, (_, i) => ctSliceBytes({ seed: 17, study: 1, instance: i + 1 }));
    const ctAlone = await blockingRun('none', burstFiles, cts, slots, ctIntervalMs, redact);
    const ocrInSlot = await blockingRun('inSlot', burstFiles, cts, slots, ctIntervalMs, redact);
    const ocrOutsideSlot = await blockingRun('outside', burstFiles, cts, slots, ctIntervalMs, redact);
    for (const [name, r] of Object.entries({ 'CT alone': ctAlone, 'OCR in the slot (before)': ocrInSlot, 'OCR outside the slot (now)': ocrOutsideSlot })) {
      log(`ocr: ${ctFiles} CT slices every ${ctIntervalMs} ms, ${name}: p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, max ${r.maxMs} ms; ${ultrasoundFiles} US files done after ${r.ocrBurstSeconds} s`);
    }
    blocking = {
      note: `${ultrasoundFiles} US 640x480 files to OCR land at once, then ${ctFiles} CT 512x512 slices arrive every ${ctIntervalMs} ms; ${slots} ingestion slots, one OCR worker; core only (files in memory), latency from a slice's arrival to its output written`,
      ingestionSlots: slots,
      ocrWorkers: 1,
      ultrasoundFiles,
      ctFiles,
      ctIntervalMs,
      ctAlone,
      ocrInSlot,
      ocrOutsideSlot,
    };
  } finally {
    await detector.close();
  }
  return {
    note: 'median of repeats, one OCR worker; each sampled frame is OCR\'d twice when text is found (detection, then the gate on the redacted frame), once when not; the engine start-up (~1-5 s per worker) is paid once per process and left out',
    repeats,
    sampleFrames,
    cases,
    series: series as OcrSeriesResult,
    blocking: blocking as OcrBlockingResult,
  };
}
