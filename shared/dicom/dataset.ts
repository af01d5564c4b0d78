/**
 * The in-memory model of a DICOM data set header: everything before the pixel data, and
 * the (small) elements after it. Values are kept as the raw bytes of the file, in the
 * file's byte order, so that what is not touched is written back exactly as it came.
 * Text is decoded on demand with the data set's Specific Character Set (see charset.ts).
 */

export interface DicomElement {
  /** (group << 16 | element), unsigned. */
  tag: number;
  /** Two-letter VR: explicit in the file, or from the dictionary for implicit VR ('UN' when unknown). */
  vr: string;
  /** Raw value bytes (not for SQ). Text values keep their padding. */
  value?: Uint8Array;
  /** Items of a sequence (SQ only). */
  items?: DicomDataset[];
  /**
   * Encapsulated content of an undefined-length OB/OW element inside the header (for example
   * the pixel data of an icon image): `value` then holds the items and their sequence
   * delimiter as they were in the file, written back verbatim after a 0xFFFFFFFF length.
   */
  encapsulated?: boolean;
}

/** Elements of one data set (or sequence item), kept in ascending tag order when written. */
export type DicomDataset = Map<number, DicomElement>;

/** How the data set is encoded, from the transfer syntax. */
export interface Encoding {
  explicitVR: boolean;
  littleEndian: boolean;
}

/** Well-known transfer syntax UIDs. */
export const TransferSyntax = {
  ImplicitVRLittleEndian: '1.2.840.10008.1.2',
  ExplicitVRLittleEndian: '1.2.840.10008.1.2.1',
  DeflatedExplicitVRLittleEndian: '1.2.840.10008.1.2.1.99',
  ExplicitVRBigEndian: '1.2.840.10008.1.2.2',
} as const;

export function encodingOf(transferSyntaxUid: string): Encoding {
  if (transferSyntaxUid === TransferSyntax.ImplicitVRLittleEndian) return { explicitVR: false, littleEndian: true };
  if (transferSyntaxUid === TransferSyntax.ExplicitVRBigEndian) return { explicitVR: true, littleEndian: false };
  return { explicitVR: true, littleEndian: true };
}

/** VRs whose value is text (bytes in the Specific Character Set, or ASCII). */
export const TEXT_VRS: ReadonlySet<string> = new Set([
  'AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UI', 'UR', 'UT',
]);

/** Text VRs that use the Specific Character Set (the rest are always ASCII). */
export const CHARSET_VRS: ReadonlySet<string> = new Set(['LO', 'LT', 'PN', 'SH', 'ST', 'UC', 'UT']);

/** VRs with a 4-byte length (and 2 reserved bytes) in explicit VR encoding. */
export const LONG_VRS: ReadonlySet<string> = new Set([
  'OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV',
]);


/** Raw bytes of a text value as a latin1 string with trailing padding (spaces, NULs) removed. */
export function asciiValue(el: DicomElement | undefined): string | undefined {
  if (!el?.value) return undefined;
  return Buffer.from(el.value.buffer, el.value.byteOffset, el.value.byteLength)
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .replace(/^ +/, '');
}

/** Encodes text as an even-length value: UI pads with NUL, other text VRs with a space. */
export function encodeAsciiValue(text: string, vr: string): Uint8Array {
  const buf = Buffer.from(text, 'latin1');
  if (buf.length % 2 === 0) return buf;
  return Buffer.concat([buf, Buffer.from(vr === 'UI' ? [0] : [0x20])]);
}

/**
 * Reads the first value of an integer element (US, SS, UL, SL) in the given byte order, signed
 * for SS and SL. Another VR (UN, say) is read as UL when its value is 4 bytes long, else as US.
 */
export function uintValue(el: DicomElement | undefined, littleEndian: boolean): number | undefined {
  const v = el?.value;
  if (!v || v.length < 2) return undefined;
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  if (el.vr === 'SS') return dv.getInt16(0, littleEndian);
  if (el.vr === 'SL') return v.length < 4 ? undefined : dv.getInt32(0, littleEndian);
  if (el.vr === 'UL' || (v.length === 4 && el.vr !== 'US')) return v.length < 4 ? undefined : dv.getUint32(0, littleEndian);
  return dv.getUint16(0, littleEndian);
}
