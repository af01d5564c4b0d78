/**
 * Test samples relabelled so that they reach the research side whatever their pixel encoding.
 * Under the default redact policy a capture, ultrasound, microscopy or angiography image is
 * OCR'd whatever its BurnedInAnnotation says; one with compressed pixel data is decoded for it
 * and, where text is found, rewritten in RLE Lossless (or held for review when it has no decoder;
 * the burned-in tests cover that policy). Tests of retrieval and of the frame index are about
 * where frames lie, so their samples are labelled CT, flagged free of burned-in text, with their
 * pixel data as it was.
 */
import { randomBytes } from 'node:crypto';

import { encodeAsciiValue } from '../../shared/dicom/dataset';
import { parseDicomBuffer } from '../../shared/dicom/parser';
import { Tags } from '../../shared/dicom/tags';
import { encodeWithDataset } from '../unit/ingest/coreHelpers';

/** CT Image Storage: a class whose pixels are not of a type at risk of burned-in text. */
const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';

/** The sample as a CT without burned-in text, with fresh Study, Series and SOP Instance UIDs (so no other test's copy shares its instance). */
export async function asCtWithFreshUids(file: Buffer): Promise<Buffer> {
  const parsed = await parseDicomBuffer(file);
  const root = `2.25.${BigInt(`0x${randomBytes(12).toString('hex')}`)}`;
  const ds = parsed.dataset;
  const text = (tag: number, vr: 'UI' | 'CS', value: string) => ds.set(tag, { tag, vr, value: encodeAsciiValue(value, vr) });
  for (const [tag, n] of [[Tags.StudyInstanceUID, 1], [Tags.SeriesInstanceUID, 2], [Tags.SOPInstanceUID, 3]] as const) text(tag, 'UI', `${root}.${n}`);
  text(Tags.SOPClassUID, 'UI', CT_IMAGE_STORAGE);
  text(Tags.Modality, 'CS', 'CT');
  text(Tags.BurnedInAnnotation, 'CS', 'NO');
  return encodeWithDataset(parsed, ds);
}
