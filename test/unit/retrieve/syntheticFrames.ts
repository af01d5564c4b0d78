/**
 * Generated encapsulated multi-frame files, for what no real sample holds: thousands of
 * frames, several fragments per frame under a basic offset table, an Extended Offset Table.
 * Each frame is a JPEG-like byte string (start marker, distinct bytes, end marker), cut into
 * fragments; the frames are returned with the file, as a reader must find them.
 */
import { randomBytes } from 'node:crypto';

import { DicomDataset, DicomElement, encodeAsciiValue } from '../../../shared/dicom/dataset';
import { Tags } from '../../../shared/dicom/tags';
import { encodeDataset, encodeFileMeta, encodePixelDataHeader } from '../../../shared/dicom/writer';

const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
const SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7';
const LE = { explicitVR: true, littleEndian: true };

export interface SyntheticOptions {
  frames: number;
  fragmentsPerFrame: number;
  /** Bytes of each frame (split evenly among its fragments, rounded to even). */
  frameBytes: number;
  basicOffsetTable: boolean;
  extendedOffsetTable?: boolean;
  uidRoot?: string;
}

function text(tag: number, vr: string, value: string): DicomElement {
  return { tag, vr, value: encodeAsciiValue(value, vr) };
}

function us(tag: number, value: number): DicomElement {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(value);
  return { tag, vr: 'US', value: b };
}

function item(value: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(0xfffe, 0);
  h.writeUInt16LE(0xe000, 2);
  h.writeUInt32LE(value.length, 4);
  return Buffer.concat([h, value]);
}

/** One frame's bytes: a JPEG start marker, then bytes that never start a fragment with one, then an end marker. */
function frameBytes(n: number): Buffer {
  const b = randomBytes(n);
  for (let i = 0; i < b.length; i++) if (b[i] === 0xff) b[i] = 0xfe;
  b[0] = 0xff;
  b[1] = 0xd8;
  b[n - 2] = 0xff;
  b[n - 1] = 0xd9;
  return b;
}

export function syntheticEncapsulated(o: SyntheticOptions): { file: Buffer; frames: Buffer[]; uids: { study: string; series: string; sop: string } } {
  const root = o.uidRoot ?? `2.25.${BigInt(`0x${randomBytes(12).toString('hex')}`)}`;
  const uids = { study: `${root}.1`, series: `${root}.2`, sop: `${root}.3` };
  const frames = Array.from({ length: o.frames }, () => frameBytes(o.frameBytes));
  const pieces = Math.max(2, Math.floor(o.frameBytes / o.fragmentsPerFrame / 2) * 2);
  const items: Buffer[] = [];
  const offsets: number[] = [];
  const lengths: number[] = [];
  let at = 0;
  for (const f of frames) {
    offsets.push(at);
    lengths.push(f.length);
    for (let k = 0; k < o.fragmentsPerFrame; k++) {
      const part = f.subarray(k * pieces, k === o.fragmentsPerFrame - 1 ? f.length : (k + 1) * pieces);
      const it = item(part);
      items.push(it);
      at += it.length;
    }
  }
  const bot = Buffer.alloc(o.basicOffsetTable ? 4 * o.frames : 0);
  if (o.basicOffsetTable) offsets.forEach((v, i) => bot.writeUInt32LE(v, i * 4));

  const ds: DicomDataset = new Map();
  const put = (el: DicomElement) => ds.set(el.tag, el);
  put(text(Tags.SOPClassUID, 'UI', SECONDARY_CAPTURE));
  put(text(Tags.SOPInstanceUID, 'UI', uids.sop));
  put(text(Tags.StudyInstanceUID, 'UI', uids.study));
  put(text(Tags.SeriesInstanceUID, 'UI', uids.series));
  put(text(Tags.Modality, 'CS', 'OT'));
  put(text(Tags.BurnedInAnnotation, 'CS', 'NO'));
  put(us(Tags.SamplesPerPixel, 1));
  put(text(Tags.PhotometricInterpretation, 'CS', 'MONOCHROME2'));
  put(text(Tags.NumberOfFrames, 'IS', String(o.frames)));
  put(us(Tags.Rows, 16));
  put(us(Tags.Columns, 16));
  put(us(Tags.BitsAllocated, 8));
  put(us(Tags.BitsStored, 8));
  put(us(Tags.HighBit, 7));
  put(us(Tags.PixelRepresentation, 0));
  if (o.extendedOffsetTable) {
    const table = Buffer.alloc(8 * o.frames);
    const sizes = Buffer.alloc(8 * o.frames);
    offsets.forEach((v, i) => table.writeBigUInt64LE(BigInt(v), i * 8));
    lengths.forEach((v, i) => sizes.writeBigUInt64LE(BigInt(v), i * 8));
    put({ tag: Tags.ExtendedOffsetTable, vr: 'OV', value: table });
    put({ tag: Tags.ExtendedOffsetTableLengths, vr: 'OV', value: sizes });
  }
  const delimiter = Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
  const file = Buffer.concat([
    encodeFileMeta(SECONDARY_CAPTURE, uids.sop, JPEG_BASELINE),
    encodeDataset(ds, LE),
    encodePixelDataHeader(Tags.PixelData, 'OB', undefined, LE),
    item(bot),
    ...items,
    delimiter,
  ]);
  return { file, frames, uids };
}
