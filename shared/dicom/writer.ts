/**
 * Encodes data sets back to bytes. Sequences and items are written with undefined length
 * (valid in every transfer syntax, and it lets an item be encoded without measuring it
 * first); other values are written as they are held, padded to even length.
 */
import { DicomDataset, DicomElement, encodeAsciiValue, Encoding, LONG_VRS } from './dataset';
import { runToEnd, STEPS_PER_CHECK } from './limits';
import { Tags } from './tags';

const UNDEFINED_LENGTH = 0xffffffff;

/**
 * One growing buffer that headers and values are written into: a header costs no allocation
 * of its own, and the result needs no concatenation of thousands of small pieces (a 400-frame
 * functional group sequence has about 3,000 element headers).
 */
class Out {
  private buf = Buffer.allocUnsafe(16 * 1024);
  length = 0;
  /** Elements and items written, for the slicing of long work. */
  steps = 0;

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  bytes(v: Uint8Array): void {
    if (v.length === 0) return;
    this.ensure(v.length);
    this.buf.set(v, this.length);
    this.length += v.length;
  }

  /** Appends one pad byte. */
  pad(value: number): void {
    this.ensure(1);
    this.buf[this.length++] = value;
  }

  header(tag: number, vr: string, length: number, enc: Encoding): void {
    this.ensure(12);
    this.length += writeHeader(this.buf, this.length, tag, vr, length, enc);
  }

  /** The bytes written, in a buffer of their own size unless the slack is small. */
  result(): Buffer {
    const used = this.buf.subarray(0, this.length);
    return this.buf.length - this.length > 64 * 1024 ? Buffer.from(used) : used;
  }
}

/** Writes an element header at `at`; returns its size (8 or 12 bytes). */
function writeHeader(b: Buffer, at: number, tag: number, vr: string, length: number, enc: Encoding): number {
  const le = enc.littleEndian;
  const group = tag >>> 16;
  const implicit = group === 0xfffe || !enc.explicitVR;
  const long = !implicit && LONG_VRS.has(vr);
  if (le) {
    b.writeUInt16LE(group, at);
    b.writeUInt16LE(tag & 0xffff, at + 2);
  } else {
    b.writeUInt16BE(group, at);
    b.writeUInt16BE(tag & 0xffff, at + 2);
  }
  if (implicit) {
    if (le) b.writeUInt32LE(length >>> 0, at + 4);
    else b.writeUInt32BE(length >>> 0, at + 4);
    return 8;
  }
  b.write(vr, at + 4, 2, 'latin1');
  if (long) {
    b.writeUInt16LE(0, at + 6);
    if (le) b.writeUInt32LE(length >>> 0, at + 8);
    else b.writeUInt32BE(length >>> 0, at + 8);
    return 12;
  }
  if (le) b.writeUInt16LE(length, at + 6);
  else b.writeUInt16BE(length, at + 6);
  return 8;
}

function header(tag: number, vr: string, length: number, enc: Encoding): Buffer {
  const b = Buffer.allocUnsafe(12);
  return b.subarray(0, writeHeader(b, 0, tag, vr, length, enc));
}

const VR_SHAPE = /^[A-Z]{2}$/;

/** A short-length explicit VR cannot hold more than 64 KiB - 1: such a value is written as UN. */
function writableVr(el: DicomElement, length: number): string {
  if (!LONG_VRS.has(el.vr) && length > 0xfffe) return 'UN';
  if (!VR_SHAPE.test(el.vr)) return 'UN';
  return el.vr;
}

function* encodeElement(el: DicomElement, enc: Encoding, out: Out): Generator<void, void> {
  if (el.items !== undefined) {
    out.header(el.tag, 'SQ', UNDEFINED_LENGTH, enc);
    for (const item of el.items) {
      out.header(Tags.Item, '', UNDEFINED_LENGTH, enc);
      yield* encodeInto(item, enc, out);
      out.header(Tags.ItemDelimitationItem, '', 0, enc);
    }
    out.header(Tags.SequenceDelimitationItem, '', 0, enc);
    return;
  }
  const value = el.value ?? EMPTY;
  if (el.encapsulated) {
    out.header(el.tag, el.vr, UNDEFINED_LENGTH, enc);
    out.bytes(value);
    return;
  }
  // Values are held as they are; an odd length is padded to even (NUL for UI, OB and UN, else a space).
  const odd = value.length % 2 === 1;
  const length = value.length + (odd ? 1 : 0);
  out.header(el.tag, writableVr(el, length), length, enc);
  out.bytes(value);
  if (odd) out.pad(el.vr === 'UI' || el.vr === 'OB' || el.vr === 'UN' ? 0 : 0x20);
}

const EMPTY = new Uint8Array(0);

/** Nesting is bounded by the parser (MAX_SEQUENCE_DEPTH), so this recursion stays shallow. */
function* encodeInto(ds: DicomDataset, enc: Encoding, out: Out): Generator<void, void> {
  // Items count as steps too: a sequence of 25,000 empty items is work without elements.
  if (++out.steps % STEPS_PER_CHECK === 0) yield;
  const tags = [...ds.keys()].sort((a, b) => a - b);
  for (const tag of tags) {
    if (++out.steps % STEPS_PER_CHECK === 0) yield;
    const el = ds.get(tag);
    // Group lengths are optional and would be stale after editing: leave them out.
    if (!el || ((tag & 0xffff) === 0 && tag >>> 16 !== 0x0002)) continue;
    yield* encodeElement(el, enc, out);
  }
}

/** Encodes a data set (no meta) in the given encoding. */
export function encodeDataset(ds: DicomDataset, enc: Encoding): Buffer {
  return runToEnd(encodeDatasetWork(ds, enc));
}

/** encodeDataset as sliced work (see limits.ts runSliced): a header of 100,000 elements takes tens of ms. */
export function* encodeDatasetWork(ds: DicomDataset, enc: Encoding): Generator<void, Buffer> {
  const out = new Out();
  yield* encodeInto(ds, enc, out);
  return out.result();
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
  set(Tags.FileMetaInformationVersion, 'OB', Buffer.from([0, 1]));
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
