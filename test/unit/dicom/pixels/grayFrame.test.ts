import { encodeAsciiValue } from '../../../../shared/dicom/dataset';
import type { PixelGeometry } from '../../../../shared/dicom/pixels/blackout';
import { grayFrame, pixelLook } from '../../../../shared/dicom/pixels/grayFrame';
import { Tags } from '../../../../shared/dicom/tags';

const geometry = (over: Partial<PixelGeometry>): PixelGeometry => {
  const g = { rows: 1, columns: 4, samplesPerPixel: 1, bytesPerSample: 1, planar: false, frames: 1, frameBytes: 0, ...over };
  return { ...g, frameBytes: g.rows * g.columns * g.samplesPerPixel * g.bytesPerSample };
};
const cs = (text: string, vr = 'CS') => ({ tag: 0, vr, value: encodeAsciiValue(text, vr) });
const us = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return { tag: 0, vr: 'US', value: b };
};

describe('grayFrame', () => {
  it('given 16-bit samples with a window, then values below and above clip to 0 and 255 and the centre is mid-grey (127)', () => {
    const g = geometry({ bytesPerSample: 2 });
    const ds = new Map([[Tags.PhotometricInterpretation, cs('MONOCHROME2')], [Tags.BitsStored, us(12)], [Tags.WindowCenter, cs('1000', 'DS')], [Tags.WindowWidth, cs('400', 'DS')]]);
    const look = pixelLook(ds, true, g);
    if ('reason' in look) throw new Error(look.reason);
    const frame = Buffer.alloc(8);
    [0, 800, 1000, 4095].forEach((v, i) => frame.writeUInt16LE(v, i * 2));
    expect([...grayFrame(frame, g, look.look).data]).toEqual([0, 0, 127, 255]);
  });

  it('given 16-bit samples without a window, then the frame\'s own range is stretched to 0-255', () => {
    const g = geometry({ bytesPerSample: 2 });
    const look = pixelLook(new Map([[Tags.PhotometricInterpretation, cs('MONOCHROME2')]]), true, g);
    if ('reason' in look) throw new Error(look.reason);
    const frame = Buffer.alloc(8);
    [100, 200, 300, 500].forEach((v, i) => frame.writeUInt16LE(v, i * 2));
    expect([...grayFrame(frame, g, look.look).data]).toEqual([0, 64, 127, 255]);
  });

  it('given MONOCHROME1, then the grey is inverted; given planar RGB, then each pixel is its luma', () => {
    const mono1 = pixelLook(new Map([[Tags.PhotometricInterpretation, cs('MONOCHROME1')]]), true, geometry({}));
    if ('reason' in mono1) throw new Error(mono1.reason);
    expect([...grayFrame(Buffer.from([0, 255, 10, 20]), geometry({}), mono1.look).data]).toEqual([255, 0, 245, 235]);
    const g = geometry({ columns: 2, samplesPerPixel: 3, planar: true });
    const rgb = pixelLook(new Map([[Tags.PhotometricInterpretation, cs('RGB')]]), true, g);
    if ('reason' in rgb) throw new Error(rgb.reason);
    // R plane, G plane, B plane: pixel 0 white, pixel 1 pure red.
    expect([...grayFrame(Buffer.from([255, 255, 255, 0, 255, 0]), g, rgb.look).data]).toEqual([255, 76]);
  });

  it('given PALETTE COLOR, then it says why it cannot be read for OCR', () => {
    expect(pixelLook(new Map([[Tags.PhotometricInterpretation, cs('PALETTE COLOR')]]), true, geometry({}))).toEqual({ reason: 'photometric interpretation PALETTE COLOR not read for OCR' });
  });
});
