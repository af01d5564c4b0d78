import { DicomElement, uintValue } from '../../../shared/dicom/dataset';
import { Tags } from '../../../shared/dicom/tags';

function element(vr: string, bytes: number[]): DicomElement {
  return { tag: Tags.ReferencePixelX0, vr, value: Uint8Array.from(bytes) };
}

describe('uintValue', () => {
  it('given a single SL value of -2, then -2 (signed, not 4294967294)', () => {
    expect(uintValue(element('SL', [0xfe, 0xff, 0xff, 0xff]), true)).toBe(-2);
    expect(uintValue(element('SL', [0xff, 0xff, 0xff, 0xfe]), false)).toBe(-2);
  });

  it('given the first of two SL values, then it is read signed', () => {
    expect(uintValue(element('SL', [0xfe, 0xff, 0xff, 0xff, 1, 0, 0, 0]), true)).toBe(-2);
  });

  it('given US, SS and UL values, then each is read with its width and sign', () => {
    expect(uintValue(element('US', [0xfe, 0xff]), true)).toBe(0xfffe);
    expect(uintValue(element('US', [0xfe, 0xff, 1, 0]), true)).toBe(0xfffe);
    expect(uintValue(element('SS', [0xfe, 0xff]), true)).toBe(-2);
    expect(uintValue(element('UL', [0xfe, 0xff, 0xff, 0xff]), true)).toBe(0xfffffffe);
  });

  it('given no value or a value shorter than two bytes, then undefined', () => {
    expect(uintValue(undefined, true)).toBeUndefined();
    expect(uintValue(element('US', [1]), true)).toBeUndefined();
    expect(uintValue(element('UL', [1, 0]), true)).toBeUndefined();
    expect(uintValue(element('SL', [1, 0]), true)).toBeUndefined();
  });
});
