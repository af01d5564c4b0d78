import { DicomDataset, encodeAsciiValue } from '../../../../shared/dicom/dataset';
import { blackOutBoxes, frameSpans, PixelGeometry, pixelGeometry } from '../../../../shared/dicom/pixels/blackout';
import type { Box } from '../../../../shared/dicom/pixels/regions';

function geometry(rows: number, columns: number, samplesPerPixel: number, bitsAllocated: number, planar: boolean, frames: number): PixelGeometry {
  const bytesPerSample = bitsAllocated / 8;
  return { rows, columns, samplesPerPixel, bytesPerSample, planar, frames, frameBytes: rows * columns * samplesPerPixel * bytesPerSample };
}

/** Every byte numbered, never zero, so a zero can only come from the blackout. */
function source(length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i % 251) + 1;
  return b;
}

/** The reference: pixel by pixel, sample by sample, with no span arithmetic. */
function expected(src: Buffer, g: PixelGeometry, boxes: readonly Box[]): Buffer {
  const out = Buffer.from(src);
  const inBox = (x: number, y: number) => boxes.some(([bx, by, w, h]) => x >= bx && x < bx + w && y >= by && y < by + h);
  for (let f = 0; f < g.frames; f++) {
    for (let y = 0; y < g.rows; y++) {
      for (let x = 0; x < g.columns; x++) {
        if (!inBox(x, y)) continue;
        for (let s = 0; s < g.samplesPerPixel; s++) {
          const sampleIndex = g.planar ? s * g.rows * g.columns + y * g.columns + x : (y * g.columns + x) * g.samplesPerPixel + s;
          const at = f * g.frameBytes + sampleIndex * g.bytesPerSample;
          out.fill(0, at, at + g.bytesPerSample);
        }
      }
    }
  }
  return out;
}

async function run(src: Buffer, g: PixelGeometry, boxes: readonly Box[], chunkSize: number): Promise<Buffer> {
  async function* chunks() {
    for (let i = 0; i < src.length; i += chunkSize) yield src.subarray(i, Math.min(src.length, i + chunkSize));
  }
  const out: Uint8Array[] = [];
  for await (const c of blackOutBoxes(chunks(), g, boxes)) out.push(c);
  return Buffer.concat(out);
}

const CASES: { name: string; g: PixelGeometry; boxes: Box[] }[] = [
  { name: '8-bit RGB interleaved', g: geometry(12, 16, 3, 8, false, 1), boxes: [[2, 1, 5, 3], [10, 8, 6, 4]] },
  { name: '8-bit RGB planar', g: geometry(12, 16, 3, 8, true, 1), boxes: [[2, 1, 5, 3], [0, 11, 16, 1]] },
  { name: '16-bit monochrome', g: geometry(10, 9, 1, 16, false, 1), boxes: [[0, 0, 9, 2], [4, 5, 3, 3]] },
  { name: '8-bit monochrome multi-frame', g: geometry(8, 8, 1, 8, false, 5), boxes: [[1, 1, 3, 3]] },
  { name: '16-bit RGB planar multi-frame, overlapping boxes', g: geometry(7, 11, 3, 16, true, 3), boxes: [[1, 1, 4, 4], [3, 2, 8, 5]] },
];

describe('blackOutBoxes', () => {
  describe.each(CASES)('$name', ({ g, boxes }) => {
    it.each([1, 7, 64, 1 << 20])('given chunks of %i bytes, then exactly the bytes under the boxes are zero in every frame', async (chunkSize) => {
      const src = source(g.frames * g.frameBytes);
      const out = await run(src, g, boxes, chunkSize);
      expect(out.equals(expected(src, g, boxes))).toBe(true);
    });
  });

  it('given bytes after the last frame (odd-length padding), then they pass through untouched', async () => {
    const g = geometry(3, 3, 1, 8, false, 1);
    const src = source(10);
    const out = await run(src, g, [[0, 0, 3, 3]], 4);
    expect([...out]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, src[9]]);
  });

  it('given chunks no box touches, then the same buffers are passed on, and touched ones are copies', async () => {
    const g = geometry(4, 4, 1, 8, false, 1);
    const src = source(16);
    const first = src.subarray(0, 8);
    const second = src.subarray(8, 16);
    async function* chunks() {
      yield first;
      yield second;
    }
    const out: Uint8Array[] = [];
    for await (const c of blackOutBoxes(chunks(), g, [[0, 3, 2, 1]])) out.push(c);
    expect(out[0]).toBe(first);
    expect(out[1]).not.toBe(second);
    expect(second[4]).toBe(13);
    expect([...(out[1] ?? [])]).toEqual([9, 10, 11, 12, 0, 0, 15, 16]);
  });
});

describe('frameSpans', () => {
  it('given boxes on adjacent rows spanning the full width, then one merged span', () => {
    expect(frameSpans(geometry(4, 5, 1, 8, false, 1), [[0, 1, 5, 2]])).toEqual([[5, 15]]);
  });
});

describe('pixelGeometry', () => {
  const us = (v: number) => Buffer.from([v & 0xff, v >> 8]);
  function ds(extra: Record<number, { vr: string; value: Uint8Array }> = {}): DicomDataset {
    const m: DicomDataset = new Map();
    const put = (tag: number, vr: string, value: Uint8Array) => m.set(tag, { tag, vr, value });
    put(0x00280002, 'US', us(3));
    put(0x00280004, 'CS', encodeAsciiValue('RGB', 'CS'));
    put(0x00280006, 'US', us(1));
    put(0x00280008, 'IS', encodeAsciiValue('2', 'IS'));
    put(0x00280010, 'US', us(4));
    put(0x00280011, 'US', us(6));
    put(0x00280100, 'US', us(8));
    for (const [tag, e] of Object.entries(extra)) put(Number(tag), e.vr, e.value);
    return m;
  }
  const pixel = (length: number | undefined) => ({ tag: 0x7fe00010, vr: 'OB', length });

  it('given native planar RGB with two frames, then the layout', () => {
    expect(pixelGeometry(ds(), true, pixel(144))).toEqual({
      geometry: { rows: 4, columns: 6, samplesPerPixel: 3, bytesPerSample: 1, planar: true, frames: 2, frameBytes: 72 },
    });
  });

  it.each([
    ['encapsulated pixel data', ds(), undefined, /encapsulated/],
    ['pixel data shorter than its frames', ds(), 143, /shorter/],
    ['bit-packed samples', ds({ 0x00280100: { vr: 'US', value: us(1) } }), 144, /whole number of bytes/],
    ['YBR_FULL_422', ds({ 0x00280004: { vr: 'CS', value: encodeAsciiValue('YBR_FULL_422', 'CS') } }), 144, /subsampled/],
    ['a Number of Frames of 0', ds({ 0x00280008: { vr: 'IS', value: encodeAsciiValue('0', 'IS') } }), 144, /Number of Frames/],
  ])('given %s, then a reason and no layout', (_what, dataset, length, reason) => {
    const r = pixelGeometry(dataset, true, pixel(length));
    expect('reason' in r && r.reason).toMatch(reason);
  });
});
