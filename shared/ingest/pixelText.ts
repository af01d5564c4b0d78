/**
 * Burned-in text found by OCR and blacked out (issue 17). For one instance of native pixel
 * data: frames sampled across the clip are read from the source by range (the stream that
 * writes the copy is not touched), turned into grey and OCR'd; the union of the word boxes,
 * with a margin, is what gets blacked out in every frame (devices burn annotations in at
 * fixed places). The gate then OCRs the sampled frames again, as the writer will produce them,
 * and refuses the file if a source identifier, a date or a name is still legible.
 *
 * Nothing here logs or returns recognised text: findings name kinds only.
 */
import { endsInsidePixelData } from '../dicom/byteReader';
import { asciiValue, DicomDataset } from '../dicom/dataset';
import { localDetector } from '../dicom/deid/freeText/detector';
import { sourceNames } from '../dicom/deid/freeText/names';
import { textOf } from '../dicom/deid/identifying';
import { blackOutBoxes, PixelGeometry } from '../dicom/pixels/blackout';
import { grayFrame, PixelLook } from '../dicom/pixels/grayFrame';
import type { Box } from '../dicom/pixels/regions';
import type { GrayImage, TextBox, TextDetector } from '../dicom/pixels/textDetector';
import { Tags } from '../dicom/tags';
import type { SeriesPixelChecks } from './seriesCheck';

/** Reads `length` bytes of the source from `offset` (the same version the stream reads). */
export type SourceRangeReader = (offset: number, length: number) => Promise<Uint8Array>;

export interface BurnedInOcr {
  detector: TextDetector;
  /** Frames OCR'd per multi-frame instance, spread over the clip, first and last included. */
  sampleFrames: number;
  /**
   * The series check of unflagged images of the other types (seriesCheck.ts): with it, one
   * image per series and size is OCR'd and the rest trusted when it reads clean; without it,
   * those images are not OCR'd (tools and benches that de-identify one file at a time).
   */
  seriesChecks?: SeriesPixelChecks;
}

/** `count` frame numbers (0-based) spread evenly over `frames`, first and last included. */
export function sampleFrameIndexes(frames: number, count: number): number[] {
  if (frames <= count) return Array.from({ length: frames }, (_, i) => i);
  if (count <= 1) return [0];
  const out = new Set<number>();
  for (let i = 0; i < count; i++) out.add(Math.round((i * (frames - 1)) / (count - 1)));
  return [...out];
}

/**
 * Whether a recognised word is text worth blacking out, not a shape the engine read as
 * letters: two letters or digits at least, the size of a line of type, and read with some
 * confidence, or long and mostly letters and digits. Anatomy read as text ("ne", "Wasi", "A)",
 * confidence under 50 on the MR sample) falls out here; a short real word missed this way is
 * still read by the gate, which holds the file if it is identifying.
 */
export function isTextWord(w: TextBox, image: { width: number; height: number }): boolean {
  const alnum = (w.text.match(/[\p{L}\p{N}]/gu) ?? []).length;
  if (alnum < 2) return false;
  const [, , width, height] = w.box;
  if (height < 5 || height > image.height / 4 || width > image.width * 0.9) return false;
  const share = alnum / [...w.text].length;
  return w.confidence >= 50 || (alnum >= 5 && share >= 0.6);
}

/** The box grown by its margin on every side, clipped to the image. */
function withMargin([x, y, w, h]: Box, image: { width: number; height: number }): Box {
  const m = Math.max(3, Math.round(h * 0.35));
  const x0 = Math.max(0, x - m);
  const y0 = Math.max(0, y - m);
  const x1 = Math.min(image.width, x + w + m);
  const y1 = Math.min(image.height, y + h + m);
  return [x0, y0, x1 - x0, y1 - y0];
}

function overlaps(a: Box, b: Box): boolean {
  return a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3];
}

/** Overlapping boxes merged into their bounding box until none overlap. */
export function mergeBoxes(boxes: readonly Box[]): Box[] {
  let out = [...boxes];
  for (let changed = true; changed;) {
    changed = false;
    const next: Box[] = [];
    for (const b of out) {
      const i = next.findIndex((n) => overlaps(n, b));
      const hit = i < 0 ? undefined : next[i];
      if (!hit) {
        next.push(b);
        continue;
      }
      const x0 = Math.min(hit[0], b[0]);
      const y0 = Math.min(hit[1], b[1]);
      next[i] = [x0, y0, Math.max(hit[0] + hit[2], b[0] + b[2]) - x0, Math.max(hit[1] + hit[3], b[1] + b[3]) - y0];
      changed = true;
    }
    out = next;
  }
  return out;
}

export interface SampledFrames {
  indexes: number[];
  /** The raw bytes of each sampled frame, as in the source. */
  bytes: Uint8Array[];
}

/** Reads the sampled frames of native pixel data whose value starts at `pixelOffset` in the source. */
export async function readSampledFrames(read: SourceRangeReader, pixelOffset: number, g: PixelGeometry, count: number): Promise<SampledFrames> {
  const indexes = sampleFrameIndexes(g.frames, count);
  const bytes: Uint8Array[] = [];
  for (const i of indexes) {
    const frame = await read(pixelOffset + i * g.frameBytes, g.frameBytes);
    // A range past the end of the file is cut short: the file ends inside its pixel data.
    if (frame.length !== g.frameBytes) throw endsInsidePixelData((g.frames - i) * g.frameBytes - frame.length);
    bytes.push(frame);
  }
  return { indexes, bytes };
}

/**
 * The word boxes found in the sampled frames, with margins, merged: what to black out in every
 * frame. A word is kept when it looks like type (isTextWord), or when its line reads as
 * identifying text (a name, a date, the source's ID) however poorly the engine rated it.
 */
export async function detectTextBoxes(frames: SampledFrames, g: PixelGeometry, look: PixelLook, detector: TextDetector, ids: SourceIdentifiers): Promise<Box[]> {
  const boxes: Box[] = [];
  for (const frame of frames.bytes) {
    const image = grayFrame(frame, g, look);
    const words = await detector.detect(image);
    const kept = new Set(words.filter((w) => isTextWord(w, image)));
    for (const line of identifyingLines(words, ids)) for (const w of line.words) kept.add(w);
    for (const w of kept) boxes.push(withMargin(w.box, image));
  }
  return mergeBoxes(boxes);
}

/** One frame with the boxes blacked out, by the same code that writes the copy. */
export async function redactedFrame(frame: Uint8Array, g: PixelGeometry, boxes: readonly Box[]): Promise<Uint8Array> {
  const one: PixelGeometry = { ...g, frames: 1 };
  const parts: Uint8Array[] = [];
  for await (const part of blackOutBoxes((async function* () { yield frame; })(), one, boxes)) parts.push(part);
  return Buffer.concat(parts);
}

/** What in a source could be read off its pixels: its names, IDs and dates (PHI: compare, never log). */
export interface SourceIdentifiers {
  /** PN values as written. */
  names: string[];
  /** IDs, accession numbers, institution names and dates, as written. */
  values: string[];
}

const IDENTIFIER_TAGS: readonly number[] = [Tags.PatientID, Tags.OtherPatientIDs, Tags.AccessionNumber, Tags.InstitutionName, Tags.StudyID];

export function sourceIdentifiers(ds: DicomDataset): SourceIdentifiers {
  const names: string[] = [];
  const values: string[] = [];
  for (const [tag, el] of ds) {
    if (el.items || el.value === undefined) continue;
    if (el.vr === 'PN') names.push(textOf(el, []));
    else if (el.vr === 'DA' || IDENTIFIER_TAGS.includes(tag)) values.push(...(asciiValue(el) ?? '').split('\\'));
  }
  return { names, values: values.map((v) => v.trim()).filter((v) => v !== '') };
}

const normalized = (s: string) => s.toUpperCase().replace(/[^\p{L}\p{N}]/gu, '');

/** Words grouped into lines (vertical overlap), each left to right: the free-text detector reads lines, not words. */
function lines(words: readonly TextBox[]): TextBox[][] {
  const sorted = [...words].sort((a, b) => a.box[1] - b.box[1] || a.box[0] - b.box[0]);
  const groups: TextBox[][] = [];
  for (const w of sorted) {
    const mid = w.box[1] + w.box[3] / 2;
    const g = groups.find((l) => l[0] && mid >= l[0].box[1] && mid <= l[0].box[1] + l[0].box[3]);
    if (g) g.push(w);
    else groups.push([w]);
  }
  return groups.map((g) => g.sort((a, b) => a.box[0] - b.box[0]));
}

/** The kinds of identifying text in one line: the free-text detector's, and the source's own IDs and name parts. */
function lineKinds(text: string, ids: SourceIdentifiers, context: { names: ReturnType<typeof sourceNames> }): string[] {
  const kinds = new Set<string>();
  for (const span of localDetector.detect(text, context)) kinds.add(span.kind);
  const flat = normalized(text);
  if (ids.values.map(normalized).some((v) => v.length >= 4 && flat.includes(v))) kinds.add('identifier');
  if (ids.names.flatMap((n) => n.split(/[\^=\s,\\]+/)).map(normalized).some((p) => p.length >= 3 && flat.includes(p))) kinds.add('name');
  return [...kinds];
}

/** The words on lines that read as identifying text, with the kinds found: PHI in `words`, never log them. */
export function identifyingLines(words: readonly TextBox[], ids: SourceIdentifiers): { words: TextBox[]; kinds: string[] }[] {
  const context = { names: sourceNames(ids.names) };
  return lines(words)
    .map((line) => ({ words: line, kinds: lineKinds(line.map((w) => w.text).join(' '), ids, context) }))
    .filter((l) => l.kinds.length > 0);
}

/** What legible identifying text a frame still shows: kinds only ('name', 'date', 'identifier', ...). */
export function identifyingText(words: readonly TextBox[], ids: SourceIdentifiers): string[] {
  return [...new Set(identifyingLines(words, ids).flatMap((l) => l.kinds))].sort();
}

/**
 * The gate on the pixels: each sampled frame, redacted as the writer will write it, OCR'd
 * again (`asWritten`: what a reader of the copy decodes, when the copy is re-encoded).
 * Returns the kinds of identifying text still legible (empty: passed). Rejects with
 * OCR_FAILED when the engine fails.
 */
export async function verifyRedactedFrames(
  frames: SampledFrames,
  g: PixelGeometry,
  look: PixelLook,
  boxes: readonly Box[],
  detector: TextDetector,
  ids: SourceIdentifiers,
  asWritten: (redacted: Uint8Array) => Promise<Uint8Array> = (r) => Promise.resolve(r),
): Promise<string[]> {
  const kinds = new Set<string>();
  for (const frame of frames.bytes) {
    const image: GrayImage = grayFrame(await asWritten(await redactedFrame(frame, g, boxes)), g, look);
    for (const k of identifyingText(await detector.detect(image), ids)) kinds.add(k);
  }
  return [...kinds].sort();
}
