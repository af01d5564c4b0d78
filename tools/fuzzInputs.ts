/**
 * Inputs for the robustness tests and the fuzz runner (tools/fuzz.ts): hostile headers built
 * from scratch (many items, many tiny elements, unknown public tags, deep nesting, deflate
 * bombs) and mutations of the real fixtures (truncations, bit flips, length fields, VR
 * changes, nesting, item and element counts, deflate ratios). Nothing here is committed as a
 * file: every input is generated when it is needed.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createDeflateRaw, deflateRawSync } from 'node:zlib';

import fc from 'fast-check';

import { DicomDataset, encodeAsciiValue, TransferSyntax } from '../shared/dicom/dataset';
import { lookupTag } from '../shared/dicom/dictionary';
import { Tags } from '../shared/dicom/tags';
import { encodeDataset, encodeFileMeta } from '../shared/dicom/writer';

const EXPLICIT_LE = { explicitVR: true, littleEndian: true };
const SOP_CLASS = '1.2.840.10008.5.1.4.1.1.7';

/** The repository root: the nearest folder above this file (or its build) holding package.json. */
export function repositoryRoot(from = __dirname): string {
  let dir = from;
  for (;;) {
    try {
      if (statSync(join(dir, 'package.json')).isFile()) return dir;
    } catch {
      // not here: look one level up
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found above the fuzz inputs');
    dir = up;
  }
}

/** Every real DICOM fixture (test/fixtures/dicom), as relative path and bytes. */
export function fixtureFiles(root = join(repositoryRoot(), 'test', 'fixtures', 'dicom')): { name: string; bytes: Buffer }[] {
  const out: { name: string; bytes: Buffer }[] = [];
  const visit = (dir: string, rel: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) visit(p, `${rel}${name}/`);
      else if (!/\.(tsv|md)$/.test(name)) out.push({ name: `${rel}${name}`, bytes: readFileSync(p) });
    }
  };
  visit(root, '');
  return out;
}

/** An explicit VR little endian element header (long form for OB, SQ, UN...). */
export function elementHeader(tag: number, vr: string, length: number): Buffer {
  const long = ['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV'].includes(vr);
  const b = Buffer.alloc(long ? 12 : 8);
  b.writeUInt16LE(tag >>> 16, 0);
  b.writeUInt16LE(tag & 0xffff, 2);
  b.write(vr, 4, 'latin1');
  if (long) b.writeUInt32LE(length >>> 0, 8);
  else b.writeUInt16LE(length, 6);
  return b;
}

/** An item, item delimiter or sequence delimiter header (no VR, whatever the syntax). */
export function delimiter(tag: number, length: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(tag >>> 16, 0);
  b.writeUInt16LE(tag & 0xffff, 2);
  b.writeUInt32LE(length >>> 0, 4);
  return b;
}

const UNDEFINED = 0xffffffff;

/** The elements every instance needs (UIDs, a patient), explicit VR little endian, no meta. */
function baseDataset(): DicomDataset {
  const ds: DicomDataset = new Map();
  const put = (tag: number, vr: string, text: string) => ds.set(tag, { tag, vr, value: encodeAsciiValue(text, vr) });
  put(Tags.SOPClassUID, 'UI', SOP_CLASS);
  put(Tags.SOPInstanceUID, 'UI', '1.2.826.0.1.3680043.8.498.1');
  put(Tags.Modality, 'CS', 'OT');
  put(Tags.PatientName, 'PN', 'FUZZ^PATIENT');
  put(Tags.PatientID, 'LO', 'FUZZ-ID-1');
  put(Tags.StudyInstanceUID, 'UI', '1.2.826.0.1.3680043.8.498.2');
  put(Tags.SeriesInstanceUID, 'UI', '1.2.826.0.1.3680043.8.498.3');
  return ds;
}

/**
 * A Part 10 instance (explicit VR little endian, or deflated) whose data set is the base
 * elements followed by `extra` (already encoded elements; the parser does not need them in
 * tag order) and, when given, `tail` (pixel data, encoded).
 */
export function instanceWith(extra: Buffer | Buffer[], options: { deflated?: boolean; tail?: Buffer } = {}): Buffer {
  const body = Buffer.concat([encodeDataset(baseDataset(), EXPLICIT_LE), ...(Array.isArray(extra) ? extra : [extra]), options.tail ?? Buffer.alloc(0)]);
  if (options.deflated) {
    return Buffer.concat([encodeFileMeta(SOP_CLASS, '1.2.826.0.1.3680043.8.498.1', TransferSyntax.DeflatedExplicitVRLittleEndian), deflateRawSync(body)]);
  }
  return Buffer.concat([encodeFileMeta(SOP_CLASS, '1.2.826.0.1.3680043.8.498.1', TransferSyntax.ExplicitVRLittleEndian), body]);
}

/** Referenced Image Sequence (0008,1140), undefined length, holding `count` empty items (8 bytes each). */
export function manySequenceItems(count: number): Buffer {
  const items = Buffer.alloc(count * 8);
  for (let i = 0; i < count; i++) {
    items.writeUInt16LE(0xfffe, i * 8);
    items.writeUInt16LE(0xe000, i * 8 + 2);
  }
  return Buffer.concat([elementHeader(Tags.ReferencedImageSequence, 'SQ', UNDEFINED), items, delimiter(Tags.SequenceDelimitationItem, 0)]);
}

/** `count` empty SH elements (8 bytes each) in private groups 0x0009, 0x000B, ... (no creators). */
export function manyTinyElements(count: number): Buffer {
  const out = Buffer.alloc(count * 8);
  let group = 0x0009;
  let element = 0x1000;
  for (let i = 0; i < count; i++) {
    const o = i * 8;
    out.writeUInt16LE(group, o);
    out.writeUInt16LE(element, o + 2);
    out.write('SH', o + 4, 'latin1');
    out.writeUInt16LE(0, o + 6);
    if (++element > 0xffff) {
      element = 0x1000;
      group += 2;
    }
  }
  return out;
}

/** `count` public tags the dictionary does not know, each an LO of 2 bytes (10 bytes each). */
export function manyUnknownPublicTags(count: number): Buffer {
  const out = Buffer.alloc(count * 10);
  let written = 0;
  for (let group = 0x0100; written < count && group < 0x7fe0; group += 2) {
    for (let element = 0x0001; written < count && element <= 0xffff; element++) {
      const tag = ((group << 16) | element) >>> 0;
      if (lookupTag(tag) !== undefined) continue;
      const o = written * 10;
      out.writeUInt16LE(group, o);
      out.writeUInt16LE(element, o + 2);
      out.write('LO', o + 4, 'latin1');
      out.writeUInt16LE(2, o + 6);
      out.write('AB', o + 8, 'latin1');
      written++;
    }
  }
  return out.subarray(0, written * 10);
}

/** Sequences nested `depth` deep (Referenced Image Sequence in an item of itself), undefined lengths. */
export function deepNesting(depth: number): Buffer {
  const open = Buffer.concat([elementHeader(Tags.ReferencedImageSequence, 'SQ', UNDEFINED), delimiter(Tags.Item, UNDEFINED)]);
  const close = Buffer.concat([delimiter(Tags.ItemDelimitationItem, 0), delimiter(Tags.SequenceDelimitationItem, 0)]);
  const leaf = Buffer.concat([elementHeader(Tags.ReferencedSOPClassUID, 'UI', 4), Buffer.from('1.2\0', 'latin1')]);
  const parts: Buffer[] = [];
  for (let i = 0; i < depth; i++) parts.push(open);
  parts.push(leaf);
  for (let i = 0; i < depth; i++) parts.push(close);
  return Buffer.concat(parts);
}

/**
 * A deflated instance whose pixel data is `inflatedBytes` of zeros: a few hundred KB on disk
 * for hundreds of MB inflated. Deflated in chunks, so the zeros are never held whole.
 */
export async function deflateBomb(inflatedBytes: number): Promise<Buffer> {
  const head = Buffer.concat([encodeDataset(baseDataset(), EXPLICIT_LE), elementHeader(Tags.PixelData, 'OB', inflatedBytes)]);
  const deflater = createDeflateRaw({ level: 9 });
  const parts: Buffer[] = [];
  deflater.on('data', (c: Buffer) => parts.push(c));
  const done = new Promise<void>((resolve, reject) => {
    deflater.on('end', resolve);
    deflater.on('error', reject);
  });
  const write = (b: Buffer) => (deflater.write(b) ? Promise.resolve() : new Promise<void>((r) => deflater.once('drain', () => r())));
  await write(head);
  const zeros = Buffer.alloc(1 << 20);
  for (let left = inflatedBytes; left > 0; left -= zeros.length) await write(left >= zeros.length ? zeros : zeros.subarray(0, left));
  deflater.end();
  await done;
  return Buffer.concat([encodeFileMeta(SOP_CLASS, '1.2.826.0.1.3680043.8.498.1', TransferSyntax.DeflatedExplicitVRLittleEndian), ...parts]);
}

/** The crafted cases of issue 10, at the sizes it reports. */
export const CRAFTED_CASES: Record<string, () => Promise<Buffer>> = {
  'million-sequence-items': async () => instanceWith(manySequenceItems(1_000_000)),
  'million-tiny-elements': async () => instanceWith(manyTinyElements(1_000_000)),
  'unknown-public-tags-200k': async () => instanceWith(manyUnknownPublicTags(200_000)),
  'nesting-1650': async () => instanceWith(deepNesting(1650)),
  'deflate-bomb-268MB': async () => deflateBomb(268 * 1024 * 1024),
};

/** One fuzz case: which fixture, and what is done to it. Small (bytes are built by buildCase). */
export type FuzzCase =
  | { fixture: number; kind: 'truncate'; at: number }
  | { fixture: number; kind: 'bitflip'; flips: { at: number; bit: number; nearHeader: boolean }[] }
  | { fixture: number; kind: 'length'; field: number; value: number }
  | { fixture: number; kind: 'vr'; field: number; vr: string }
  | { fixture: number; kind: 'nesting'; field: number; depth: number }
  | { fixture: number; kind: 'items'; field: number; count: number }
  | { fixture: number; kind: 'elements'; field: number; count: number; unknownPublic: boolean }
  | { fixture: number; kind: 'deflate'; inflatedBytes: number; flips: number[] };

const FRACTION = 1_000_000;
const VRS = ['SQ', 'UN', 'OB', 'OW', 'LO', 'UT', 'UI', 'US', 'UL', 'AT', 'XX', '\0\0'];
const INTERESTING_LENGTHS = [0, 1, 2, 7, 0xfffe, 0xffff, 0x10000, 0x7fffffff, 0xfffffffe, 0xffffffff];

/**
 * The fuzz cases as a fast-check arbitrary over `fixtureCount` fixtures. Positions are
 * fractions (of the file, or of its candidate element headers), so that a case means the same
 * on every fixture and shrinks well. Sizes stay within `scale` (1: CI; larger for nightly runs).
 */
export function fuzzCaseArbitrary(fixtureCount: number, scale = 1): fc.Arbitrary<FuzzCase> {
  const fixture = fc.integer({ min: 0, max: fixtureCount - 1 });
  const fraction = fc.integer({ min: 0, max: FRACTION - 1 });
  return fc.oneof(
    { weight: 3, arbitrary: fc.record({ fixture, kind: fc.constant('truncate' as const), at: fraction }) },
    {
      weight: 4,
      arbitrary: fc.record({
        fixture,
        kind: fc.constant('bitflip' as const),
        flips: fc.array(fc.record({ at: fraction, bit: fc.integer({ min: 0, max: 7 }), nearHeader: fc.boolean() }), { minLength: 1, maxLength: 16 }),
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        fixture,
        kind: fc.constant('length' as const),
        field: fraction,
        value: fc.oneof(fc.constantFrom(...INTERESTING_LENGTHS), fc.integer({ min: 0, max: 0xffffffff })),
      }),
    },
    { weight: 3, arbitrary: fc.record({ fixture, kind: fc.constant('vr' as const), field: fraction, vr: fc.constantFrom(...VRS) }) },
    { weight: 2, arbitrary: fc.record({ fixture, kind: fc.constant('nesting' as const), field: fraction, depth: fc.integer({ min: 1, max: 2_000 * scale }) }) },
    { weight: 2, arbitrary: fc.record({ fixture, kind: fc.constant('items' as const), field: fraction, count: fc.integer({ min: 1, max: 30_000 * scale }) }) },
    {
      weight: 2,
      arbitrary: fc.record({
        fixture,
        kind: fc.constant('elements' as const),
        field: fraction,
        count: fc.integer({ min: 1, max: 60_000 * scale }),
        unknownPublic: fc.boolean(),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        fixture,
        kind: fc.constant('deflate' as const),
        inflatedBytes: fc.integer({ min: 1, max: 24 * 1024 * 1024 * scale }),
        flips: fc.array(fraction, { maxLength: 4 }),
      }),
    },
  );
}

/**
 * Offsets of what look like explicit VR element headers (two upper-case letters at +4):
 * where lengths, VRs and insertions are aimed. Falls back to every 8th offset for implicit VR.
 */
function elementOffsets(bytes: Buffer): number[] {
  const out: number[] = [];
  const end = Math.min(bytes.length - 8, 256 * 1024);
  for (let o = 132; o < end; o += 2) {
    const a = bytes[o + 4] ?? 0;
    const b = bytes[o + 5] ?? 0;
    if (a >= 0x41 && a <= 0x5a && b >= 0x41 && b <= 0x5a && lookupTag(((bytes.readUInt16LE(o) << 16) | bytes.readUInt16LE(o + 2)) >>> 0)?.vr !== undefined) out.push(o);
  }
  if (out.length === 0) for (let o = 132; o < end; o += 8) out.push(o);
  return out.length ? out : [0];
}

const LONG_VR_NAMES = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

function pick<T>(list: readonly T[], fraction: number): T {
  return list[Math.min(list.length - 1, Math.floor((fraction / FRACTION) * list.length))]!;
}

/** The bytes of a fuzz case. Deterministic: the same case gives the same bytes. */
export async function buildCase(c: FuzzCase, fixtures: readonly Buffer[]): Promise<Buffer> {
  const source = fixtures[c.fixture % fixtures.length]!;
  switch (c.kind) {
    case 'truncate':
      return source.subarray(0, Math.floor((c.at / FRACTION) * source.length));
    case 'bitflip': {
      const out = Buffer.from(source);
      for (const f of c.flips) {
        const span = f.nearHeader ? Math.min(out.length, 4096) : out.length;
        const at = Math.floor((f.at / FRACTION) * span);
        if (at < out.length) out[at] = (out[at] ?? 0) ^ (1 << f.bit);
      }
      return out;
    }
    case 'length': {
      const out = Buffer.from(source);
      const o = pick(elementOffsets(out), c.field);
      const vr = out.toString('latin1', o + 4, o + 6);
      if (LONG_VR_NAMES.has(vr) && o + 12 <= out.length) out.writeUInt32LE(c.value >>> 0, o + 8);
      else if (o + 8 <= out.length) out.writeUInt16LE(c.value & 0xffff, o + 6);
      return out;
    }
    case 'vr': {
      const out = Buffer.from(source);
      const o = pick(elementOffsets(out), c.field);
      if (o + 6 <= out.length) out.write(c.vr, o + 4, 'latin1');
      return out;
    }
    case 'nesting':
    case 'items':
    case 'elements': {
      const o = pick(elementOffsets(source), c.field);
      const inserted =
        c.kind === 'nesting' ? deepNesting(c.depth) : c.kind === 'items' ? manySequenceItems(c.count) : c.unknownPublic ? manyUnknownPublicTags(c.count) : manyTinyElements(c.count);
      return Buffer.concat([source.subarray(0, o), inserted, source.subarray(o)]);
    }
    case 'deflate': {
      const out = await deflateBomb(c.inflatedBytes);
      // Flips after the file meta: a corrupt deflate stream.
      const meta = 132 + 12 + (out.readUInt32LE(140) || 0);
      for (const f of c.flips) {
        const at = meta + Math.floor((f / FRACTION) * Math.max(1, out.length - meta));
        if (at < out.length) out[at] = (out[at] ?? 0) ^ 0x10;
      }
      return out;
    }
  }
}
