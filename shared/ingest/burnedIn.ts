/**
 * Burned-in annotation: pixel data that may show identifying text. The header says so
 * (BurnedInAnnotation YES), or says nothing on SOP classes and modalities where captured
 * screens, scanned documents and ultrasound overlays are the norm.
 */
import { asciiValue, DicomDataset } from '../dicom/dataset';

export interface BurnedInPolicy {
  /** quarantine: hold for review (default); allow: ingest as is (for sources known to be clean). */
  mode: 'quarantine' | 'allow';
}

const BURNED_IN_ANNOTATION = 0x00280301;

/** SOP classes (a UID and every UID below it) whose pixel data commonly carries text. */
const RISKY_SOP_CLASSES: readonly { uid: string; what: string }[] = [
  { uid: '1.2.840.10008.5.1.4.1.1.7', what: 'secondary capture' },
  { uid: '1.2.840.10008.5.1.4.1.1.6', what: 'ultrasound' },
  { uid: '1.2.840.10008.5.1.4.1.1.3.1', what: 'ultrasound multi-frame' },
  { uid: '1.2.840.10008.5.1.4.1.1.104', what: 'encapsulated document' },
  { uid: '1.2.840.10008.5.1.4.1.1.77.1', what: 'visible light image' },
];

/** Modalities whose images commonly carry text when the SOP class does not say. */
const RISKY_MODALITIES: ReadonlySet<string> = new Set(['US', 'OT', 'SC', 'XC', 'ES', 'GM', 'DOC', 'OP', 'IVUS']);

/**
 * Why this instance's pixels may show identifying text, or undefined when there is no such
 * reason. The answer names a category only, never a value.
 */
export function burnedInRisk(ds: DicomDataset, sopClassUid: string, modality: string): string | undefined {
  const flag = asciiValue(ds.get(BURNED_IN_ANNOTATION))?.toUpperCase();
  if (flag === 'YES') return 'BurnedInAnnotation is YES';
  if (flag === 'NO') return undefined;
  const byClass = RISKY_SOP_CLASSES.find((c) => sopClassUid === c.uid || sopClassUid.startsWith(`${c.uid}.`));
  if (byClass) return `${byClass.what} without BurnedInAnnotation`;
  if (RISKY_MODALITIES.has(modality)) return `modality ${modality} without BurnedInAnnotation`;
  return undefined;
}
