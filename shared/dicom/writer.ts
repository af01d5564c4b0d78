/**
 * Encodes data sets back to bytes. Sequences and items are written with undefined length
 * (valid in every transfer syntax, and it lets an item be encoded without measuring it
 * first); other values are written as they are held, padded to even length.
 */
import { DicomDataset, DicomElement, encodeAsciiValue, Encoding, LONG_VRS, Tags } from './dataset';

const UNDEFINED_LENGTH = 0xffffffff;

/** Collects output chunks; small element headers are batched into one buffer. */
class Out {
  readonly chunks: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
  }
}

function header(tag: number, vr: string, length: number, enc: Encoding): Buffer {
  const le = enc.littleEndian;
  const u16 = (b: Buffer, v: number, at: number) => (le ? b.writeUInt16LE(v, at) : b.writeUInt16BE(v, at));
  const u32 = (b: Buffer, v: number, at: number) => (le ? b.writeUInt32LE(v >>> 0, at) : b.writeUInt32BE(v >>> 0, at));
  const group = tag >>> 16;
  const implicit = group === 0xfffe || !enc.explicitVR;
  const long = !implicit && LONG_VRS.has(vr);
  const b = Buffer.allocUnsafe(long ? 12 : 8);
  u16(b, group, 0);
  u16(b, tag & 0xffff, 2);
  if (implicit) {
    u32(b, length, 4);
  } else if (long) {
    b.write(vr, 4, 'latin1');
    b.writeUInt16LE(0, 6);
    u32(b, length, 8);
  } else {
    b.write(vr, 4, 'latin1');
    u16(b, length, 6);
  }
  return b;
}

/** A short-length explicit VR cannot hold more than 64 KiB - 1: such a value is written as UN. */
function writableVr(el: DicomElement, length: number): string {
  if (!LONG_VRS.has(el.vr) && length > 0xfffe) return 'UN';
  if (!/^[A-Z]{2}$/.test(el.vr)) return 'UN';
  return el.vr;
}

function padded(el: DicomElement): Buffer {
  const v = el.value ? Buffer.from(el.value.buffer, el.value.byteOffset, el.value.byteLength) : Buffer.alloc(0);
  if (v.length % 2 === 0 || el.encapsulated) return v;
  const pad = el.vr === 'UI' || el.vr === 'OB' || el.vr === 'UN' ? 0 : 0x20;
  return Buffer.concat([v, Buffer.from([pad])]);
}

function encodeElement(el: DicomElement, enc: Encoding, out: Out): void {
  if (el.items !== undefined) {
    out.push(header(el.tag, 'SQ', UNDEFINED_LENGTH, enc));
    for (const item of el.items) {
      out.push(header(Tags.Item, '', UNDEFINED_LENGTH, enc));
      encodeInto(item, enc, out);
      out.push(header(Tags.ItemDelimitationItem, '', 0, enc));
    }
    out.push(header(Tags.SequenceDelimitationItem, '', 0, enc));
    return;
  }
  const value = padded(el);
  if (el.encapsulated) {
    out.push(header(el.tag, el.vr, UNDEFINED_LENGTH, enc));
    out.push(value);
    return;
  }
  out.push(header(el.tag, writableVr(el, value.length), value.length, enc));
  out.push(value);
}

function encodeInto(ds: DicomDataset, enc: Encoding, out: Out): void {
  const tags = [...ds.keys()].sort((a, b) => a - b);
  for (const tag of tags) {
    const el = ds.get(tag);
    // Group lengths are optional and would be stale after editing: leave them out.
    if (!el || ((tag & 0xffff) === 0 && tag >>> 16 !== 0x0002)) continue;
    encodeElement(el, enc, out);
  }
}

/** Encodes a data set (no meta) in the given encoding. */
export function encodeDataset(ds: DicomDataset, enc: Encoding): Buffer {
  const out = new Out();
  encodeInto(ds, enc, out);
  return Buffer.concat(out.chunks, out.length);
}

/** The 2.25 UID identifying this implementation in file meta (ImplementationClassUID). */
export const IMPLEMENTATION_CLASS_UID = '2.25.163843946298116424372766063473302187841';
export const IMPLEMENTATION_VERSION_NAME = 'VNA_RESEARCH_1';

/**
 * Encodes the preamble, "DICM" and the file meta group (explicit VR little endian, with a
 * recomputed group length) for the given SOP class and instance and transfer syntax.
 */
export function encodeFileMeta(sopClassUid: string, sopInstanceUid: string, transferSyntaxUid: string): Buffer {
  const enc: Encoding = { explicitVR: true, littleEndian: true };
  const meta: DicomDataset = new Map();
  const set = (tag: number, vr: string, value: Uint8Array) => meta.set(tag, { tag, vr, value });
  set(0x00020001, 'OB', Buffer.from([0, 1]));
  set(Tags.MediaStorageSOPClassUID, 'UI', encodeAsciiValue(sopClassUid, 'UI'));
  set(Tags.MediaStorageSOPInstanceUID, 'UI', encodeAsciiValue(sopInstanceUid, 'UI'));
  set(Tags.TransferSyntaxUID, 'UI', encodeAsciiValue(transferSyntaxUid, 'UI'));
  set(Tags.ImplementationClassUID, 'UI', encodeAsciiValue(IMPLEMENTATION_CLASS_UID, 'UI'));
  set(Tags.ImplementationVersionName, 'SH', encodeAsciiValue(IMPLEMENTATION_VERSION_NAME, 'SH'));
  const body = encodeDataset(meta, enc);
  const groupLength = Buffer.alloc(12);
  groupLength.writeUInt16LE(0x0002, 0);
  groupLength.writeUInt16LE(0x0000, 2);
  groupLength.write('UL', 4, 'latin1');
  groupLength.writeUInt16LE(4, 6);
  groupLength.writeUInt32LE(body.length, 8);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), groupLength, body]);
}

/** The element header of the top-level pixel data, re-encoded for the output encoding. */
export function encodePixelDataHeader(tag: number, vr: string, length: number | undefined, enc: Encoding): Buffer {
  return header(tag, vr || 'OW', length === undefined ? UNDEFINED_LENGTH : length, enc);
}
