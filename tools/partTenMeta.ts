/**
 * The check a downloaded copy must pass before it gets its final name: a PS3.10 file (the
 * 128-byte preamble, "DICM", then the file meta group in explicit VR little endian) whose meta
 * names the instance that was asked for. Only the head of the file is read: a copy of any size
 * is checked in the same few kilobytes.
 */

/** Bytes of a file's head that are enough for its meta group (a meta group is at most a few hundred bytes in practice). */
export const META_HEAD_BYTES = 64 * 1024;

export interface PartTenMeta {
  mediaStorageSopClassUid?: string;
  mediaStorageSopInstanceUid?: string;
  transferSyntaxUid?: string;
}

/** VRs whose length is 4 bytes after 2 reserved ones (PS3.5 7.1.2). */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

function uidValue(bytes: Buffer): string {
  return bytes.toString('latin1').replace(/[\0 ]+$/, '');
}

/**
 * The file meta of `head` (the file's first bytes). Throws an Error saying what is wrong when
 * it has no preamble and "DICM", when the meta group is cut short by `head`, or when it is
 * malformed. Pure.
 */
export function readPartTenMeta(head: Buffer): PartTenMeta {
  if (head.length < 132 || head.toString('latin1', 128, 132) !== 'DICM') throw new Error('not a DICOM file: no preamble and "DICM"');
  const meta: PartTenMeta = {};
  let at = 132;
  let end: number | undefined;
  for (;;) {
    if (end !== undefined && at >= end) break;
    if (at + 8 > head.length) {
      // Without a group length, a head that ends where an element would start ends the group.
      if (end === undefined && at >= head.length) break;
      throw new Error('the file meta group is cut short');
    }
    const group = head.readUInt16LE(at);
    if (group !== 0x0002) {
      if (end !== undefined) throw new Error('the file meta group is shorter than its group length says');
      break;
    }
    const element = head.readUInt16LE(at + 2);
    const vr = head.toString('latin1', at + 4, at + 6);
    if (!/^[A-Z]{2}$/.test(vr)) throw new Error('the file meta group is not explicit VR');
    let length: number;
    let valueAt: number;
    if (LONG_VRS.has(vr)) {
      if (at + 12 > head.length) throw new Error('the file meta group is cut short');
      length = head.readUInt32LE(at + 8);
      valueAt = at + 12;
    } else {
      length = head.readUInt16LE(at + 6);
      valueAt = at + 8;
    }
    if (valueAt + length > head.length) throw new Error('the file meta group is cut short');
    const value = head.subarray(valueAt, valueAt + length);
    if (element === 0x0000 && vr === 'UL' && length === 4) end = valueAt + 4 + value.readUInt32LE(0);
    else if (element === 0x0002) meta.mediaStorageSopClassUid = uidValue(value);
    else if (element === 0x0003) meta.mediaStorageSopInstanceUid = uidValue(value);
    else if (element === 0x0010) meta.transferSyntaxUid = uidValue(value);
    at = valueAt + length;
  }
  if (!meta.transferSyntaxUid) throw new Error('the file meta group has no TransferSyntaxUID');
  return meta;
}

/**
 * Throws an Error naming the mismatch when `head` is not the PS3.10 file of `sopInstanceUid`
 * (in `transferSyntaxUid`, when the answer named one).
 */
export function checkPartTenHead(head: Buffer, sopInstanceUid: string, transferSyntaxUid?: string): void {
  const meta = readPartTenMeta(head);
  if (meta.mediaStorageSopInstanceUid !== sopInstanceUid) throw new Error('the file meta names another SOP instance than the one asked for');
  if (transferSyntaxUid !== undefined && meta.transferSyntaxUid !== transferSyntaxUid) throw new Error('the file meta names another transfer syntax than the answer');
}
