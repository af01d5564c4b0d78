/** The DICOM JSON model (PS3.18 F.2): how the catalog stores and QIDO-RS answers data sets. */
import { tagToHex } from './dictionary';
import { type TagKeyword, Tags } from './tags';

/** One attribute in the DICOM JSON model (PS3.18 F.2). */
export interface DicomJsonAttribute {
  vr: string;
  Value?: unknown[];
  InlineBinary?: string;
  BulkDataURI?: string;
}

/** A data set in the DICOM JSON model, keyed by "GGGGEEEE". */
export type DicomJson = Record<string, DicomJsonAttribute>;

/** The DICOM JSON key of a keyword: `jsonKey('Modality')` is "00080060". */
export function jsonKey(keyword: TagKeyword): string {
  return tagToHex(Tags[keyword]);
}

/** The DICOM JSON keys of some keywords, by keyword: `jsonKeys('Modality').Modality` is "00080060". */
export function jsonKeys<K extends TagKeyword>(...keywords: K[]): Readonly<Record<K, string>> {
  return Object.fromEntries(keywords.map((k) => [k, jsonKey(k)])) as Record<K, string>;
}
