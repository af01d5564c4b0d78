/**
 * The pipeline core, storage-agnostic: parse the header from a byte stream, de-identify it,
 * verify the result, and produce the output as a stream: the new header, then the pixel data
 * straight from the source, then what follows it as the profile allows. Memory holds the
 * header and one chunk of pixel data, whatever the file's size.
 */
import type { IngestionDocument } from '../catalog/documents';
import { ByteReader, endsInsidePixelData } from '../dicom/byteReader';
import { asciiValue, DicomDataset, encodeAsciiValue, Encoding, TransferSyntax, uintValue } from '../dicom/dataset';
import { DeidContext, deidentifyDatasetSliced, DeidReport } from '../dicom/deid/engine';
import { cloudAssistedDetector, findCloudPhi } from '../dicom/deid/freeText/cloud';
import { localDetector } from '../dicom/deid/freeText/detector';
import type { Profile } from '../dicom/deid/profile';
import { resolveAction } from '../dicom/deid/resolve';
import { verifyDeidentified } from '../dicom/deid/verify';
import { HeaderLimits, nextTurn, runSliced, withDefaults } from '../dicom/limits';
import { DicomHeader, pixelDataChunks, readHeader, readTrailing } from '../dicom/parser';
import { blackOutBoxes, PixelGeometry } from '../dicom/pixels/blackout';
import { RLE_LOSSLESS } from '../dicom/pixels/codecs';
import { pixelLook } from '../dicom/pixels/grayFrame';
import type { Box } from '../dicom/pixels/regions';
import { Tags } from '../dicom/tags';
import { checkPixelEncapsulation, verifyOutputTransferSyntax } from '../dicom/transferSyntax';
import { encodeDataset, encodeDatasetWork, encodeFileMeta, encodePixelDataHeader } from '../dicom/writer';
import { ErrorCodes, isPipelineError, PipelineError } from '../errors';
import { BurnedInDecision, BurnedInPolicy, decideBurnedIn, markBurnedInRemoved, unflaggedImage } from './burnedIn';
import { decodedPhotometric, fixUpTranscodedHeader, locateSourceFrames, readSampledCompressedFrames, roundTripRle, SourceFrames, TranscodePlan, transcodeToRle, UndecodableFrame } from './compressedPixels';
import { detectTextBoxes, mergeBoxes, readSampledFrames, SampledFrames, sourceIdentifiers, SourceRangeReader, verifyRedactedFrames } from './pixelText';
import { SeriesPixelChecks, SeriesVerdict } from './seriesCheck';

const DICOMDIR_SOP_CLASS = '1.2.840.10008.1.3.10';
/** Encapsulated PDF, CDA, STL, OBJ, MTL and any later encapsulated document class (PS3.4 B.5). */
const ENCAPSULATED_DOCUMENT_CLASSES = '1.2.840.10008.5.1.4.1.1.104';

/**
 * Why an instance is a document whose content the engine cannot clean, or undefined. The text
 * of a PDF or CDA is not pixel data: BurnedInAnnotation says nothing about it, and zeroing it
 * would publish an empty file under its MIME type.
 */
function encapsulatedDocument(ds: DicomDataset, sopClassUid: string): string | undefined {
  if (sopClassUid === ENCAPSULATED_DOCUMENT_CLASSES || sopClassUid.startsWith(`${ENCAPSULATED_DOCUMENT_CLASSES}.`)) return 'an encapsulated document SOP class';
  if (ds.has(Tags.EncapsulatedDocument)) return 'an Encapsulated Document (0042,0011)';
  return undefined;
}

export interface UidSet {
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
}

export interface PreparedInstance {
  header: DicomHeader;
  /** The de-identified data set (before the pixel data). */
  dataset: DicomDataset;
  report: DeidReport;
  original: UidSet & { sopClassUid: string };
  research: UidSet;
  sopClassUid: string;
  outputTs: string;
  enc: Encoding;
  /** The whole de-identified file; consumes the source. Call once. */
  output(): AsyncGenerator<Uint8Array>;
  /** Where the pixel data value starts in `output()` (after its element header), when there is pixel data: for the frame index. */
  pixelValueOffset?: number;
  /** Set when burned-in regions are blacked out: boxes per frame, and frames. */
  pixelsCleaned?: NonNullable<DeidAudit['pixelsCleaned']>;
  /** The boxes blacked out in every frame (coordinates only, for tests and tools; not recorded). */
  pixelBoxes?: Box[];
}

/** The audit record of a de-identification (what the index keeps of it: counts, profile, key id, gate result). */
export type DeidAudit = NonNullable<IngestionDocument['deidentification']>;

/** A prepared instance, or the gate's refusal of its output with the audit to record. */
export type Preparation = { ok: true; prepared: PreparedInstance } | { ok: false; error: PipelineError; audit: DeidAudit };

export interface PrepareOptions {
  deid: DeidContext;
  maxHeaderBytes: number;
  /**
   * The other bounds on one file (elements, items, nesting, memory, inflation; see
   * shared/dicom/limits.ts); each defaults. `maxHeaderBytes` above wins over the one here.
   */
  limits?: Partial<HeaderLimits>;
  /** Size of the source, when known: declared lengths beyond it fail early. */
  totalSize?: number;
  burnedIn: BurnedInPolicy;
  /**
   * Reads a byte range of the same source version: how OCR gets sampled frames without
   * holding the stream back. Without it, what the redact policy would OCR is held.
   */
  readSourceRange?: SourceRangeReader;
  /**
   * Where the redact policy's OCR of the instance runs (`run` reads the sampled frames and OCRs
   * them): the ingestion queues it on OCR's own bound, outside its concurrency slot and with
   * the source let go meanwhile (shared/ingest/ocrQueue.ts). Without it, in place.
   */
  ocrStage?: <T>(run: () => Promise<T>) => Promise<T>;
  /**
   * Where a file waits for its series' check by another file (seriesCheck.ts): the ingestion
   * waits outside its slot, with the source let go, as for OCR. Without it, in place.
   */
  waitStage?: <T>(wait: () => Promise<T>) => Promise<T>;
}

/** What OCR leaves to the writer: the boxes to black out in every frame, and the audit. */
interface OcrRedaction {
  geometry: PixelGeometry;
  boxes: Box[];
  audit: NonNullable<DeidAudit['pixelsCleaned']>;
  /** Compressed source with boxes to black out: where its frames lie, and how the decoded frames look. */
  compressed?: { source: SourceFrames; transferSyntaxUid: string; photometric: string; sourcePhotometric: string };
}

/**
 * The redact policy on one instance: sampled frames read by range (and decoded, when
 * compressed), OCR'd, the union of the boxes (device regions first) checked by a second OCR of
 * the redacted frames as the copy will hold them. Throws DEID_BURNED_IN_ANNOTATION, naming a
 * category only, when the file must be held: pixels it cannot read or decode, frames it cannot
 * locate, OCR that fails, identifying text still legible.
 */
async function redactByOcr(header: DicomHeader, decision: Extract<BurnedInDecision, { action: 'ocr' }>, read: SourceRangeReader | undefined, totalSize: number | undefined): Promise<OcrRedaction> {
  const hold = burnedInHold(decision.risk);
  // Pixels this engine cannot read: held when at risk; an unflagged image of another type passes as it did before its series check.
  const cannot = (why: string, cause?: unknown): Error => (decision.unflagged ? new UnreadablePixels(why) : hold(why, cause));
  if (header.deflated) throw cannot('a deflated source cannot be read by frame for OCR');
  if (!read) throw cannot('the source cannot be read by range for OCR');
  // A file that ends inside its native pixel data fails as its streamed value would, before a frame is read.
  const declared = header.pixelData?.length;
  if (declared !== undefined && totalSize !== undefined && header.body.position + declared > totalSize) throw endsInsidePixelData(header.body.position + declared - totalSize);
  const g = decision.geometry;
  const le = header.encoding.littleEndian;
  const compressed = decision.compressed;
  // Decoded frames are read as the copy's header will describe them (photometric as decoded).
  const sourcePhotometric = asciiValue(header.dataset.get(Tags.PhotometricInterpretation))?.toUpperCase() ?? '';
  const photometric = compressed ? decodedPhotometric(compressed.transferSyntaxUid, sourcePhotometric, g.samplesPerPixel) : undefined;
  const lookOf = photometric ? new Map(header.dataset).set(Tags.PhotometricInterpretation, { tag: Tags.PhotometricInterpretation, vr: 'CS', value: encodeAsciiValue(photometric, 'CS') }) : header.dataset;
  const layout = pixelLook(lookOf, le, g);
  if ('reason' in layout) throw cannot(`cannot OCR: ${layout.reason}`);
  const ids = sourceIdentifiers(header.dataset);
  let source: SourceFrames | undefined;
  let frames: SampledFrames;
  if (compressed && header.pixelData) {
    try {
      source = await locateSourceFrames(read, header.dataset, header.encoding, compressed.transferSyntaxUid, header.pixelData, header.body.position, totalSize);
      frames = await readSampledCompressedFrames(read, source, compressed.transferSyntaxUid, g, decision.ocr.sampleFrames, sourcePhotometric);
    } catch (e) {
      if (e instanceof UndecodableFrame) throw cannot(e.message, e);
      if (isPipelineError(e, ErrorCodes.DICOM_MALFORMED)) throw cannot('the frames of the compressed pixel data cannot be located', e);
      throw e;
    }
  } else {
    frames = await readSampledFrames(read, header.body.position, g, decision.ocr.sampleFrames);
  }
  // A re-encoded copy is checked as a reader will decode it: RLE encoded and decoded back, and equal to what was redacted.
  const asWritten = async (redacted: Uint8Array): Promise<Uint8Array> => {
    const back = await roundTripRle(redacted, g);
    if (!back.equals(redacted)) throw hold('the lossless re-encoding does not give back the redacted frame');
    return back;
  };
  let found: Box[];
  let remaining: string[];
  try {
    found = await detectTextBoxes(frames, g, layout.look, decision.ocr.detector, ids);
    const boxes = mergeBoxes([...decision.boxes, ...found]);
    // Nothing to black out: the gate would read the very frames detection read (the copy keeps
    // them as they are), and detection keeps every word of a line that reads as identifying, so
    // the engine (deterministic) would find nothing either. The second pass is skipped.
    remaining = boxes.length === 0 ? [] : await verifyRedactedFrames(frames, g, layout.look, boxes, decision.ocr.detector, ids, compressed ? asWritten : undefined);
  } catch (e) {
    if (isPipelineError(e, ErrorCodes.OCR_FAILED)) throw hold('OCR failed', e);
    throw e;
  }
  if (remaining.length > 0) throw hold(`${STILL_LEGIBLE} (${remaining.join(', ')})`);
  const boxes = mergeBoxes([...decision.boxes, ...found]);
  const method = decision.boxes.length > 0 ? (found.length > 0 ? 'regions+ocr' : 'regions') : 'ocr';
  // Nothing to black out: a compressed source is copied as it is, in its own syntax.
  const transcode = compressed && source && photometric && boxes.length > 0 ? { source, transferSyntaxUid: compressed.transferSyntaxUid, photometric, sourcePhotometric } : undefined;
  return {
    geometry: g,
    boxes,
    audit: { boxes: boxes.length, frames: g.frames, method, sampledFrames: frames.indexes, ...(transcode ? { transcodedTo: RLE_LOSSLESS } : {}) },
    ...(transcode ? { compressed: transcode } : {}),
  };
}

/** An unflagged image of another type whose pixels this engine cannot read for its series check: it passes. */
class UnreadablePixels extends Error {}

/** The hold when identifying text is still legible after redaction: what makes a series' verdict "text". */
const STILL_LEGIBLE = 'text still legible after redaction';

/** Of the series check: whether to OCR this unflagged image, and the verdict to settle when this file is the sample. */
interface SeriesCheck {
  check: boolean;
  settle?: (verdict: SeriesVerdict | undefined) => void;
}

/**
 * The series check for an unflagged image of another type (seriesCheck.ts): its series'
 * verdict, waited for (outside the slot) when another file is checking it, or the claim to
 * check it. Nothing to check outside the redact policy with an engine and its checks.
 */
async function seriesCheckOf(header: DicomHeader, original: UidSet & { sopClassUid: string }, modality: string, options: PrepareOptions): Promise<SeriesCheck> {
  const checks = options.burnedIn.mode === 'redact' ? options.burnedIn.ocr?.seriesChecks : undefined;
  if (!checks || !unflaggedImage(header.dataset, header.pixelData, original.sopClassUid, modality)) return { check: false };
  const le = header.encoding.littleEndian;
  const key = SeriesPixelChecks.keyOf(original.seriesInstanceUid, uintValue(header.dataset.get(Tags.Rows), le) ?? 0, uintValue(header.dataset.get(Tags.Columns), le) ?? 0);
  const lookup = () => checks.lookup(key);
  const found = await (options.waitStage && !header.deflated ? options.waitStage(lookup) : lookup());
  return found.verdict === undefined ? { check: true, settle: found.settle } : { check: found.verdict === 'text' };
}

/** An unflagged image the engine cannot read is written as if it had not been checked. */
function passUnreadable(e: unknown): undefined {
  if (e instanceof UnreadablePixels) return undefined;
  throw e;
}

/** The OCR's result, with the series' verdict settled from it first: text found or still legible, clean, or none (it could not tell). */
async function settled(ocr: Promise<OcrRedaction>, settle: SeriesCheck['settle']): Promise<OcrRedaction> {
  try {
    const result = await ocr;
    settle?.(result.boxes.length > 0 ? 'text' : 'clean');
    return result;
  } catch (e) {
    settle?.(isPipelineError(e, ErrorCodes.DEID_BURNED_IN_ANNOTATION) && e.message.includes(STILL_LEGIBLE) ? 'text' : undefined);
    throw e;
  }
}

/** The error that holds a file at risk of burned-in text, with why (a category, never a value). */
function burnedInHold(risk: string): (why: string, cause?: unknown) => PipelineError {
  return (why, cause) => new PipelineError(ErrorCodes.DEID_BURNED_IN_ANNOTATION, `pixel data may hold burned-in text (${risk}); held for review: ${why}`, { cause });
}

/** The profile with the Clean Pixel Data option: what the copy claims once its pixels were cleaned. */
function withCleanPixelData(profile: Profile): Profile {
  return profile.options.has('cleanPixelData') ? profile : { ...profile, options: new Set([...profile.options, 'cleanPixelData']) };
}

export function auditRecord(deid: DeidContext, report: DeidReport, gate: 'passed' | 'failed'): DeidAudit {
  // Free-text redactions by attribute and kind ("text:ImageComments:name"), counts only.
  const textRedactions = Object.fromEntries(Object.entries(report.textRedactions).map(([k, n]) => [`text:${k}`, n]));
  return { profile: deid.profile.name, profileVersion: deid.profile.version, profileDigest: deid.profile.digest, keyId: deid.keyId, actions: { ...report.actions, ...textRedactions }, gate };
}

/**
 * The cloud option (freeText/cloud.ts): the file's texts sent to the recognizer in one batch
 * before the engine runs, and the engine and the gate given the local detector assisted by
 * what it found. Without a recognizer, the context as it is. A recognizer's failure goes up
 * (transient ones retry the file): a file is never published with its text unanalyzed when the
 * option is on.
 */
async function withCloudFindings(ds: DicomDataset, deid: DeidContext): Promise<DeidContext> {
  if (!deid.cloudPhi) return deid;
  const { findings } = await findCloudPhi(ds, deid.cloudPhi);
  return { ...deid, detector: cloudAssistedDetector(deid.detector ?? localDetector, findings) };
}

/** Elements after the pixel data survive only where the profile keeps them (signatures and private groups go). */
function keepTrailing(trailing: DicomDataset, profile: Profile): DicomDataset {
  const kept: DicomDataset = new Map();
  for (const [tag, el] of trailing) {
    if (!el.items && resolveAction(tag, profile, { vr: el.vr }).action === 'keep') kept.set(tag, el);
  }
  return kept;
}

/** What the marking and the dummies add to a header, so that the gate's re-parse of the output fits its limits. */
const OUTPUT_SLACK = { elements: 1024, items: 256, memory: 1024 * 1024 };

/**
 * Reads and de-identifies the header, giving the event loop a turn now and then (a large
 * header does not stall the other files in flight). Throws PipelineError DICOM_* for a file
 * that can never be ingested (DICOM_TOO_MANY_ELEMENTS, DICOM_HEADER_MEMORY_LIMIT and
 * DICOM_INFLATION_LIMIT past the limits; the last one from `output()` too, while the pixel
 * data of a deflated source inflates), DICOM_TRANSFER_SYNTAX_MISMATCH when the declared transfer
 * syntax contradicts the pixel data (from `output()` too, for fragments), DEID_DOCUMENT_NOT_CLEANED
 * for an encapsulated document (PDF, CDA, ...), and DEID_BURNED_IN_ANNOTATION under the quarantine
 * policy. An output the gate refuses is a result, not a throw: `{ ok: false }` with the
 * DEID_VERIFICATION_FAILED error and the de-identification audit to record with it.
 */
export async function prepareForResearch(reader: ByteReader, options: PrepareOptions): Promise<Preparation> {
  const limits: Partial<HeaderLimits> & { maxHeaderBytes: number } = { ...options.limits, maxHeaderBytes: options.maxHeaderBytes };
  const header = await readHeader(reader, { ...limits, totalSize: options.totalSize });
  const ds = header.dataset;
  const mediaClass = asciiValue(header.meta.get(Tags.MediaStorageSOPClassUID));
  const original = {
    studyInstanceUid: asciiValue(ds.get(Tags.StudyInstanceUID)) ?? '',
    seriesInstanceUid: asciiValue(ds.get(Tags.SeriesInstanceUID)) ?? '',
    sopInstanceUid: asciiValue(ds.get(Tags.SOPInstanceUID)) ?? asciiValue(header.meta.get(Tags.MediaStorageSOPInstanceUID)) ?? '',
    sopClassUid: asciiValue(ds.get(Tags.SOPClassUID)) ?? mediaClass ?? '',
  };
  if (original.sopClassUid === DICOMDIR_SOP_CLASS || mediaClass === DICOMDIR_SOP_CLASS) {
    throw new PipelineError(ErrorCodes.DICOM_DICOMDIR, 'file is a DICOMDIR (a media directory), not an instance');
  }
  const names = { studyInstanceUid: 'StudyInstanceUID', seriesInstanceUid: 'SeriesInstanceUID', sopInstanceUid: 'SOPInstanceUID', sopClassUid: 'SOPClassUID' } as const;
  const missing = (Object.keys(names) as (keyof typeof names)[]).filter((k) => !original[k]).map((k) => names[k]);
  if (missing.length) throw new PipelineError(ErrorCodes.DICOM_MISSING_UID, `file lacks ${missing.join(', ')}`);
  // The label the output gets must describe its pixel data; a deflated source is written inflated.
  let outputTs: string = header.deflated ? TransferSyntax.ExplicitVRLittleEndian : header.transferSyntaxUid;
  checkPixelEncapsulation(outputTs, header.pixelData);
  // File meta elements inside the data set (a second meta group) are not allowed there (PS3.10
  // 7.1) and would relabel the output for the next reader: they are never written.
  for (const tag of [...ds.keys()]) if (tag >>> 16 === 0x0002) ds.delete(tag);
  // Before the burned-in decision: whatever BurnedInAnnotation or the policy says, a document is held.
  const document = encapsulatedDocument(ds, original.sopClassUid);
  if (document) throw new PipelineError(ErrorCodes.DEID_DOCUMENT_NOT_CLEANED, `the instance holds ${document}, whose content is not cleaned; held for review`);
  const modality = asciiValue(ds.get(Tags.Modality)) ?? '';
  const series = await seriesCheckOf(header, original, modality, options);
  let burnedIn: BurnedInDecision;
  let ocrRun: OcrRedaction | undefined;
  try {
    burnedIn = decideBurnedIn(
      { dataset: ds, littleEndian: header.encoding.littleEndian, pixelData: header.pixelData, sopClassUid: original.sopClassUid, modality, transferSyntaxUid: header.transferSyntaxUid, checkUnflagged: series.check },
      options.burnedIn,
      options.deid.profile,
    );
    if (burnedIn.action === 'quarantine') throw new PipelineError(ErrorCodes.DEID_BURNED_IN_ANNOTATION, burnedIn.reason);
    // The series' sample settles its verdict as its OCR ends, inside the OCR stage: files waiting on it outside their slots go on at once.
    const runOcr = (decision: Extract<BurnedInDecision, { action: 'ocr' }>) => () => settled(redactByOcr(header, decision, options.readSourceRange, options.totalSize), series.settle);
    ocrRun = burnedIn.action === 'ocr' ? await (options.ocrStage && !header.deflated ? options.ocrStage(runOcr(burnedIn)) : runOcr(burnedIn)()).catch(passUnreadable) : undefined;
  } finally {
    // Whatever happened short of a verdict (no OCR, OCR_BUSY, a fault), the next file of the series checks it instead.
    series.settle?.(undefined);
  }
  const ocr = ocrRun && !(burnedIn.action === 'ocr' && burnedIn.unflagged && ocrRun.boxes.length === 0) ? ocrRun : undefined;
  const cleaning = burnedIn.action === 'clean' ? { geometry: burnedIn.geometry, boxes: burnedIn.boxes } : ocr && ocr.boxes.length > 0 ? ocr : undefined;
  // A compressed source with text to black out is decoded and written in RLE Lossless: its header describes the decoded frames.
  const transcode: TranscodePlan | undefined = ocr?.compressed
    ? { transferSyntaxUid: ocr.compressed.transferSyntaxUid, geometry: ocr.geometry, boxes: ocr.boxes, source: ocr.compressed.source, littleEndian: header.encoding.littleEndian, sourcePhotometric: ocr.compressed.sourcePhotometric }
    : undefined;
  if (transcode && ocr?.compressed) {
    fixUpTranscodedHeader(ds, transcode.transferSyntaxUid, ocr.compressed.photometric, transcode.geometry, header.encoding.littleEndian);
    outputTs = RLE_LOSSLESS;
  }
  // Marked before de-identification, so the gate checks the header that is actually written.
  if (burnedIn.action === 'clean' || ocr) markBurnedInRemoved(ds);
  const pixelsCleaned = burnedIn.action === 'clean' ? { boxes: burnedIn.boxes.length, frames: burnedIn.geometry.frames } : ocr?.audit;

  await nextTurn();
  // Pixels OCR'd and cleaned: the copy says so in its method sequence (Clean Pixel Data, 113101).
  const deidOptions = ocr ? { ...options.deid, profile: withCleanPixelData(options.deid.profile) } : options.deid;
  const deid = await withCloudFindings(ds, deidOptions);
  const report = await deidentifyDatasetSliced(ds, deid);
  const research = {
    studyInstanceUid: report.research.studyInstanceUid ?? '',
    seriesInstanceUid: report.research.seriesInstanceUid ?? '',
    sopInstanceUid: report.research.sopInstanceUid ?? '',
  };
  const sopClassUid = asciiValue(ds.get(Tags.SOPClassUID)) ?? original.sopClassUid;
  // A deflated source is written inflated: the output stays streamable and readable by every tool.
  const enc: Encoding = header.deflated ? { explicitVR: true, littleEndian: true } : header.encoding;
  const headerBytes = Buffer.concat([encodeFileMeta(sopClassUid, research.sopInstanceUid, outputTs), await runSliced(encodeDatasetWork(ds, enc))]);
  await nextTurn();

  // The gate: what is about to be written, re-parsed and checked, before anything is published.
  const gateLimits = withDefaults(limits);
  const gate = await verifyDeidentified(headerBytes, report, deid.profile, {
    ...gateLimits,
    detector: deid.detector,
    maxHeaderBytes: Math.max(gateLimits.maxHeaderBytes, headerBytes.length),
    maxElements: gateLimits.maxElements + OUTPUT_SLACK.elements,
    maxItems: gateLimits.maxItems + OUTPUT_SLACK.items,
    maxHeaderMemoryBytes: gateLimits.maxHeaderMemoryBytes + OUTPUT_SLACK.memory,
  });
  if (gate.passed) {
    const pixelHeader = header.pixelData ? encodePixelDataHeader(header.pixelData.tag, header.pixelData.vr, header.pixelData.length, enc) : Buffer.alloc(0);
    await verifyOutputTransferSyntax(Buffer.concat([headerBytes, pixelHeader]), outputTs, header.pixelData, {
      ...gateLimits,
      maxHeaderBytes: Math.max(gateLimits.maxHeaderBytes, headerBytes.length + pixelHeader.length),
      maxElements: gateLimits.maxElements + OUTPUT_SLACK.elements,
      maxItems: gateLimits.maxItems + OUTPUT_SLACK.items,
      maxHeaderMemoryBytes: gateLimits.maxHeaderMemoryBytes + OUTPUT_SLACK.memory,
    });
  }
  if (!gate.passed) {
    return {
      ok: false,
      error: new PipelineError(ErrorCodes.DEID_VERIFICATION_FAILED, `de-identified output failed verification: ${gate.findings.slice(0, 5).join('; ')}`),
      audit: auditRecord(deid, report, 'failed'),
    };
  }

  async function* output(): AsyncGenerator<Uint8Array> {
    yield headerBytes;
    if (header.pixelData) {
      yield encodePixelDataHeader(header.pixelData.tag, header.pixelData.vr, header.pixelData.length, enc);
      const chunks = pixelDataChunks(header, header.deflated ? undefined : options.totalSize);
      if (transcode) yield* transcodeToRle(chunks, transcode, burnedInHold(burnedIn.action === 'ocr' ? burnedIn.risk : ''));
      else yield* cleaning ? blackOutBoxes(chunks, cleaning.geometry, cleaning.boxes) : chunks;
    }
    const trailing = keepTrailing(await readTrailing(header.body, header.encoding, limits), options.deid.profile);
    if (trailing.size) yield encodeDataset(trailing, enc);
  }

  const pixelValueOffset = header.pixelData ? headerBytes.length + encodePixelDataHeader(header.pixelData.tag, header.pixelData.vr, header.pixelData.length, enc).length : undefined;
  return { ok: true, prepared: { header, dataset: ds, report, original, research, sopClassUid, outputTs, enc, output, pixelValueOffset, ...(pixelsCleaned ? { pixelsCleaned } : {}), ...(cleaning ? { pixelBoxes: [...cleaning.boxes] } : {}) } };
}

/** prepareForResearch for callers to whom a refused output is one more failure (the tools, the bench, tests): throws its DEID_VERIFICATION_FAILED. */
export async function prepareDeidentifiedInstance(reader: ByteReader, options: PrepareOptions): Promise<PreparedInstance> {
  const result = await prepareForResearch(reader, options);
  if (!result.ok) throw result.error;
  return result.prepared;
}
