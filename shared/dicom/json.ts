/** The DICOM JSON model (PS3.18 F.2): how the catalog stores and QIDO-RS answers data sets. */

/** One attribute in the DICOM JSON model (PS3.18 F.2). */
export interface DicomJsonAttribute {
  vr: string;
  Value?: unknown[];
  InlineBinary?: string;
  BulkDataURI?: string;
}

/** A data set in the DICOM JSON model, keyed by "GGGGEEEE". */
export type DicomJson = Record<string, DicomJsonAttribute>;
