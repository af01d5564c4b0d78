/**
 * The frame index of real research copies: every frame at the index's ranges equals the frame
 * as pydicom extracts it from the same copy, and the index built from the written copy by
 * ranged reads equals the one built while the copy was streamed out.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { bufferReader } from '../../../shared/dicom/byteReader';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { readHeader } from '../../../shared/dicom/parser';
import { prepareDeidentifiedInstance } from '../../../shared/ingest/deidentifyInstance';
import type { FrameIndex } from '../../../shared/retrieve/frameIndex';
import { bitPackedFrameRange, repackBitFrame } from '../../../shared/retrieve/frameIndexBits';
import { buildFrameIndexFromCopy, CompactFrameIndex, expandFrameIndex, FrameIndexBuilder, pixelLayout, watchFrames } from '../../../shared/retrieve/frameIndexBuilder';
import { MemoryResearchStore } from '../fakes';
import { independentFrameHashes, sha256 } from './independentFrames';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');

/** Fixture, what it is. */
const CASES: [string, string][] = [
  ['highdicom/dx_image.dcm', 'native, one frame, odd length'],
  ['ms-anonymizer/samples__lung.dcm', 'native, one frame'],
  ['highdicom/sm_image.dcm', 'native RGB, 25 frames'],
  ['pydicom-deb/test_files__rtdose_expb.dcm', 'native big endian, 15 frames'],
  ['pydicom-deb/test_files__image_dfl.dcm', 'deflated source, written inflated'],
  ['pydicom-data/liver_nonbyte_aligned.dcm', 'one bit, 3 frames not byte-aligned'],
  ['highdicom/seg_image_sm_dots.dcm', 'one bit, 62 frames of 100 bits'],
  ['dicom-test-files/dcmqi__segmentations__23x38x3__seg__label.seg', 'one bit, 3 frames of 874 bits'],
  ['pydicom-deb/test_files__rtdose_rle.dcm', 'RLE, 15 frames, no offset table'],
  ['pydicom-data/emri_small_RLE.dcm', 'RLE, 10 frames, basic offset table'],
  ['fo-dicom/D_CLUNIE_CT1_RLE_FRAGS.dcm', 'RLE, one frame in 4 fragments'],
  ['pydicom-deb/test_files__SC_rgb_jpeg_dcmtk.dcm', 'JPEG baseline, basic offset table'],
  ['fo-dicom/JPEGwithIcon.dcm', 'JPEG baseline, one frame'],
  ['dicomParser/encapsulated__multi-frame__IM00001.fragmented_no_bot_jpeg_baseline.50.dcm', 'JPEG baseline, 8 frames in 44 fragments, no offset table'],
  ['fo-dicom/GH610.dcm', 'JPEG lossless'],
  ['highdicom/sm_image_jpegls.dcm', 'JPEG-LS, 25 frames, basic offset table'],
  ['pydicom-data/emri_small_jpeg_ls_lossless.dcm', 'JPEG-LS, 10 frames, no offset table'],
  ['dicomParser/encapsulated__single-frame__CT1_UNC.fragmented_bot_jpeg_ls.80.dcm', 'JPEG-LS, one frame in 21 fragments, basic offset table'],
  ['pydicom-data/emri_small_jpeg_2k_lossless.dcm', 'JPEG 2000, 10 frames, no offset table'],
  ['pydicom-data/liver_nonbyte_aligned_j2k.dcm', 'JPEG 2000, 3 frames, basic offset table'],
  ['fo-dicom/GH064.dcm', 'JPEG 2000, one frame'],
  ['pydicom-deb/test_files__693_J2KI.dcm', 'JPEG 2000 lossy'],
];

interface Copy {
  name: string;
  bytes: Buffer;
  index: CompactFrameIndex;
}

/** The frames at an index's ranges in a copy. */
function framesOf(copy: Buffer, index: FrameIndex): Buffer[] {
  switch (index.kind) {
    case 'none':
      return [];
    case 'native':
      return Array.from({ length: index.count }, (_, i) => copy.subarray(index.offset + i * index.frameLength, index.offset + (i + 1) * index.frameLength));
    case 'bitPacked':
      return Array.from({ length: index.count }, (_, i) => {
        const r = bitPackedFrameRange(index, i);
        return repackBitFrame(copy.subarray(r.offset, r.offset + r.length), r.shift, index.frameBits);
      });
    case 'encapsulated':
      return index.frames.map((ranges) => Buffer.concat(ranges.map(([o, n]) => copy.subarray(o, o + n))));
  }
}

async function researchCopy(name: string): Promise<Copy> {
  const source = readFileSync(join(FIXTURES, name));
  const prepared = await prepareDeidentifiedInstance(bufferReader(source), {
    deid: { profile: defaultProfile(), key: Buffer.alloc(32, 7), keyId: 'test' },
    maxHeaderBytes: 1 << 24,
    totalSize: source.length,
    burnedIn: { mode: 'allow' },
  });
  const watched = watchFrames(prepared);
  const parts: Uint8Array[] = [];
  for await (const c of watched.output()) parts.push(c);
  const result = watched.result();
  if ('failure' in result) throw result.failure;
  return { name, bytes: Buffer.concat(parts), index: result.index };
}

const copies = new Map<string, Copy>();
let hashes: Map<string, string[]>;

beforeAll(async () => {
  for (const [name] of CASES) copies.set(name, await researchCopy(name));
  const all = [...copies.values()];
  const independent = independentFrameHashes(all.map((c) => c.bytes));
  hashes = new Map(all.map((c, i) => [c.name, independent[i]!]));
}, 120_000);

describe('frame index of real research copies', () => {
  test.each(CASES)('given %s (%s), then each frame at the index equals the frame pydicom extracts', (name) => {
    const copy = copies.get(name)!;
    const frames = framesOf(copy.bytes, expandFrameIndex(copy.index));
    expect(frames.length).toBeGreaterThan(0);
    expect(frames.map(sha256)).toEqual(hashes.get(name));
  });

  test.each(CASES)('given %s (%s), then the index built from the written copy by ranged reads equals the streamed one', async (name) => {
    const copy = copies.get(name)!;
    const research = new MemoryResearchStore();
    research.blobs.set('copy.dcm', { data: copy.bytes, version: { etag: '"1"', rank: 'r' } });
    const ranged = await buildFrameIndexFromCopy(research, 'copy.dcm', copy.bytes.length);
    expect(expandFrameIndex(ranged)).toEqual(expandFrameIndex(copy.index));
  });

  test('the kinds covered: native, one bit packed, and encapsulated with and without offset tables and fragmented frames', () => {
    const kinds = new Set([...copies.values()].map((c) => c.index.kind));
    expect([...kinds].sort()).toEqual(['bitPacked', 'encapsulated', 'native']);
    const fragmented = [...copies.values()].filter((c) => c.index.kind === 'encapsulated' && c.index.count > 1 && c.index.lengths.length > c.index.count);
    expect(fragmented.length).toBeGreaterThanOrEqual(1);
  });

  test('given the copy fed in pieces of 1 to 13 bytes, then the index is the same as fed whole', async () => {
    const copy = copies.get('dicomParser/encapsulated__multi-frame__IM00001.fragmented_no_bot_jpeg_baseline.50.dcm')!;
    const reader = bufferReader(copy.bytes);
    const header = await readHeader(reader, { maxHeaderBytes: 1 << 24 });
    const layout = pixelLayout(header.dataset, header.encoding, header.transferSyntaxUid, header.pixelData, reader.position);
    for (const piece of [1, 3, 7, 8, 9, 13]) {
      const b = new FrameIndexBuilder(layout);
      for (let o = 0; o < copy.bytes.length; o += piece) b.feed(copy.bytes.subarray(o, o + piece));
      expect(expandFrameIndex(b.result())).toEqual(expandFrameIndex(copy.index));
    }
  });

  test('given a copy without pixel data, then its index says none', async () => {
    const copy = await researchCopy('dcmjs/test__sample-sr.dcm');
    expect(copy.index).toEqual({ kind: 'none' });
  });
});
