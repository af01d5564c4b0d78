/**
 * Burned-in annotation: pixel data that may show identifying text. The header says so
 * (BurnedInAnnotation YES), or says nothing on SOP classes and modalities where captured
 * screens, scanned documents and ultrasound overlays are the norm.
 */
import { asciiValue, DicomDataset, encodeAsciiValue, uintValue } from '../dicom/dataset';
import type { Profile } from '../dicom/deid/profile';
import type { PixelDataHeader } from '../dicom/parser';
import { PixelGeometry,pixelGeometry } from '../dicom/pixels/blackout';
import { Box, boxesFor, parseBurnedInConfig } from '../dicom/pixels/regions';
import { Tags } from '../dicom/tags';
import { decodedGeometry } from './compressedPixels';
import type { BurnedInOcr } from './pixelText';

export interface BurnedInPolicy {
  /**
   * redact (default): on the image types at risk, the device's region set (if any) and the
   * text OCR finds are blacked out, and the gate OCRs the result; BurnedInAnnotation NO is not
   * taken on its word for these types. quarantine: hold for review, unless the profile has the
   * Clean Pixel Data option and a region set for the device, in which case the regions are
   * blacked out; allow: ingest as is (for sources known to be clean).
   */
  mode: 'redact' | 'quarantine' | 'allow';
  /** The OCR engine and its sampling, for `redact`; without it, `redact` holds what it would OCR. */
  ocr?: BurnedInOcr;
}


/** SOP classes (a UID and every UID below it) whose pixel data commonly carries text. */
const RISKY_SOP_CLASSES: readonly { uid: string; what: string }[] = [
  { uid: '1.2.840.10008.5.1.4.1.1.7', what: 'secondary capture' },
  { uid: '1.2.840.10008.5.1.4.1.1.6', what: 'ultrasound' },
  { uid: '1.2.840.10008.5.1.4.1.1.3.1', what: 'ultrasound multi-frame' },
  { uid: '1.2.840.10008.5.1.4.1.1.104', what: 'encapsulated document' },
  { uid: '1.2.840.10008.5.1.4.1.1.77.1', what: 'visible light image' },
  { uid: '1.2.840.10008.5.1.4.1.1.12.1', what: 'X-ray angiography' },
  { uid: '1.2.840.10008.5.1.4.1.1.12.2', what: 'X-ray radiofluoroscopy' },
  { uid: '1.2.840.10008.5.1.4.1.1.12.3', what: 'X-ray angiographic bi-plane' },
];

/** Modalities whose images commonly carry text when the SOP class does not say. */
const RISKY_MODALITIES: ReadonlySet<string> = new Set(['US', 'OT', 'SC', 'XC', 'ES', 'GM', 'DOC', 'OP', 'IVUS']);
/** Modalities OCR'd under the redact policy besides the above: fluoroscopy and angiography screens. */
const OCR_MODALITIES: ReadonlySet<string> = new Set([...RISKY_MODALITIES, 'XA', 'RF', 'SM']);

/**
 * Why this instance is of a type at risk whatever its BurnedInAnnotation says (captures,
 * ultrasound, XA/RF, endoscopy and photos, screen saves), or undefined. Under the redact
 * policy these are OCR'd even when the flag says NO: a flag is a claim, the pixels are the fact.
 */
export function typeAtRisk(ds: DicomDataset, sopClassUid: string, modality: string): string | undefined {
  const imageType = (asciiValue(ds.get(Tags.ImageType)) ?? '').toUpperCase().split('\\').map((v) => v.trim());
  if (imageType.includes('SCREEN SAVE')) return 'ImageType SCREEN SAVE';
  const byClass = RISKY_SOP_CLASSES.find((c) => sopClassUid === c.uid || sopClassUid.startsWith(`${c.uid}.`));
  if (byClass) return byClass.what;
  if (OCR_MODALITIES.has(modality)) return `modality ${modality}`;
  return undefined;
}

/**
 * Why this instance's pixels may show identifying text, or undefined when there is no such
 * reason. The answer names a category only, never a value.
 */
export function burnedInRisk(ds: DicomDataset, sopClassUid: string, modality: string): string | undefined {
  const flag = asciiValue(ds.get(Tags.BurnedInAnnotation))?.toUpperCase();
  if (flag === 'YES') return 'BurnedInAnnotation is YES';
  if (flag === 'NO') return undefined;
  const byClass = RISKY_SOP_CLASSES.find((c) => sopClassUid === c.uid || sopClassUid.startsWith(`${c.uid}.`));
  if (byClass) return `${byClass.what} without BurnedInAnnotation`;
  if (RISKY_MODALITIES.has(modality)) return `modality ${modality} without BurnedInAnnotation`;
  return undefined;
}


/** What to do with an instance's pixel data before it is written. */
export type BurnedInDecision =
  | { action: 'pass' }
  | { action: 'quarantine'; reason: string }
  | { action: 'clean'; geometry: PixelGeometry; boxes: Box[] }
  /** Redact policy: OCR the frames, then black out `boxes` (the device's regions) and what it finds. */
  | {
      action: 'ocr';
      /** Of the frames as OCR reads them: decoded ones (interleaved) for compressed pixel data. */
      geometry: PixelGeometry;
      boxes: Box[];
      risk: string;
      ocr: BurnedInOcr;
      /** Set for compressed pixel data: its frames are decoded in this syntax, and the copy is written in RLE Lossless. */
      compressed?: { transferSyntaxUid: string };
      /**
       * An image of another type without the flag, checked for its series (seriesCheck.ts):
       * when OCR finds nothing, the copy is written as if it had not been OCR'd (unmarked), the
       * same bytes as the series' trusted images.
       */
      unflagged?: true;
    };

export interface BurnedInInput {
  dataset: DicomDataset;
  littleEndian: boolean;
  pixelData: PixelDataHeader | undefined;
  sopClassUid: string;
  modality: string;
  /** The source's transfer syntax: which decoder compressed pixel data needs. */
  transferSyntaxUid?: string;
  /**
   * Under the redact policy, for an image of another type without BurnedInAnnotation
   * (`unflaggedImage`): OCR it, as its series' sample or because its series showed text.
   * Without it such an image passes (its series read clean, or no series check is configured).
   */
  checkUnflagged?: boolean;
}

/**
 * Whether the redact policy's series check applies: pixel data, BurnedInAnnotation missing,
 * and not of a type at risk (those are OCR'd one by one whatever the flag).
 */
export function unflaggedImage(ds: DicomDataset, pixelData: PixelDataHeader | undefined, sopClassUid: string, modality: string): boolean {
  if (!pixelData || ds.has(Tags.EncapsulatedDocument)) return false;
  const flag = asciiValue(ds.get(Tags.BurnedInAnnotation))?.toUpperCase();
  if (flag === 'YES' || flag === 'NO') return false;
  return typeAtRisk(ds, sopClassUid, modality) === undefined;
}

/**
 * Applies the policy to one instance. Cleaning needs all of: the profile's Clean Pixel Data
 * option, a region set matching the device (and image size), and native pixel data whose
 * bytes map to pixels; short of any, a risky instance is quarantined. Reasons name
 * categories, never values.
 */
export function decideBurnedIn(input: BurnedInInput, policy: BurnedInPolicy, profile: Profile): BurnedInDecision {
  if (policy.mode === 'allow') return { action: 'pass' };
  if (policy.mode === 'redact') return decideRedaction(input, policy, profile);
  const risk = burnedInRisk(input.dataset, input.sopClassUid, input.modality);
  if (!risk) return { action: 'pass' };
  const hold = (why: string): BurnedInDecision => ({ action: 'quarantine', reason: `pixel data may hold burned-in text (${risk}); held for review: ${why}` });
  if (!profile.options.has('cleanPixelData')) return hold('the profile has no Clean Pixel Data option');
  if (!input.pixelData) return hold('no pixel data to clean');
  const boxes = deviceBoxes(input, profile);
  if (boxes.length === 0) return hold('no burned-in region configured for this device and image size');
  const layout = pixelGeometry(input.dataset, input.littleEndian, input.pixelData);
  if ('reason' in layout) return hold(`cannot clean ${layout.reason}`);
  return { action: 'clean', geometry: layout.geometry, boxes };
}

/** The device's region set for this image (manufacturer, model and size), or none. */
function deviceBoxes(input: BurnedInInput, profile: Profile): Box[] {
  const { config } = parseBurnedInConfig(profile.burnedIn);
  const le = input.littleEndian;
  const image = {
    manufacturer: asciiValue(input.dataset.get(Tags.Manufacturer)) ?? '',
    model: asciiValue(input.dataset.get(Tags.ManufacturerModelName)) ?? '',
    rows: uintValue(input.dataset.get(Tags.Rows), le) ?? 0,
    columns: uintValue(input.dataset.get(Tags.Columns), le) ?? 0,
  };
  return image.manufacturer === '' ? [] : boxesFor(config, image);
}

/**
 * The redact policy: the types at risk (whatever the flag), and any instance flagged YES, are
 * OCR'd; the device's region set applies first, OCR adds what it misses. What cannot be OCR'd
 * (compressed pixel data without a decoder here, unmapped pixel data, no engine) is held with its reason.
 */
function decideRedaction(input: BurnedInInput, policy: BurnedInPolicy, profile: Profile): BurnedInDecision {
  const flag = asciiValue(input.dataset.get(Tags.BurnedInAnnotation))?.toUpperCase();
  const type = typeAtRisk(input.dataset, input.sopClassUid, input.modality);
  const unflagged = !type && flag !== 'YES' && flag !== 'NO' && input.checkUnflagged === true && policy.ocr !== undefined;
  const risk = flag === 'YES' ? 'BurnedInAnnotation is YES' : type ? (flag === 'NO' ? `${type}, flagged NO` : `${type} without BurnedInAnnotation`) : unflagged ? `${input.modality || 'image'} without BurnedInAnnotation, checked for its series` : undefined;
  if (!risk) return { action: 'pass' };
  const hold = (why: string): BurnedInDecision => ({ action: 'quarantine', reason: `pixel data may hold burned-in text (${risk}); held for review: ${why}` });
  if (!input.pixelData) return { action: 'pass' };
  // Compressed pixel data is OCR'd once decoded, where a decoder for its syntax is at hand.
  const compressed = input.pixelData.length === undefined;
  const layout = compressed ? decodedGeometry(input.dataset, input.littleEndian, input.transferSyntaxUid ?? '') : pixelGeometry(input.dataset, input.littleEndian, input.pixelData);
  // An unflagged image of another type that this engine cannot read passes as it did before the series check (the next image of its series is tried).
  if ('reason' in layout) return unflagged ? { action: 'pass' } : hold(`cannot OCR ${layout.reason}`);
  if (!policy.ocr) return hold('no OCR engine configured');
  return {
    action: 'ocr', geometry: layout.geometry, boxes: deviceBoxes(input, profile), risk, ocr: policy.ocr,
    ...(compressed ? { compressed: { transferSyntaxUid: input.transferSyntaxUid ?? '' } } : {}),
    ...(unflagged ? { unflagged: true as const } : {}),
  };
}

/** After cleaning, the header must stop claiming (or leaving open) that text is burned in. */
export function markBurnedInRemoved(ds: DicomDataset): void {
  ds.set(Tags.BurnedInAnnotation, { tag: Tags.BurnedInAnnotation, vr: 'CS', value: encodeAsciiValue('NO', 'CS') });
}
