import { lookupTag, matchesTagMask, parseTagMask } from '../../../shared/dicom/dictionary';
import { Tags } from '../../../shared/dicom/tags';

describe('parseTagMask', () => {
  it('given a repeating group "60xx3000", then it matches (6000,3000) and (60FE,3000) but not (6000,3001) or (6100,3000)', () => {
    const mask = parseTagMask('60xx3000');
    expect(mask).toEqual({ mask: 0xff00ffff, value: 0x60003000 });
    expect(mask && [0x60003000, 0x60fe3000, 0x60003001, 0x61003000].map((t) => matchesTagMask(t, mask))).toEqual([true, true, false, false]);
  });

  it('given upper-case X digits, then the same mask as lower-case', () => {
    expect(parseTagMask('50XXXXXX')).toEqual(parseTagMask('50xxxxxx'));
  });

  it('given a plain tag, a keyword or a malformed pattern, then undefined', () => {
    for (const text of ['00100010', 'PatientName', '60xx300', '60xx30000', '60yy3000']) expect(parseTagMask(text)).toBeUndefined();
  });
});

describe('the generated Tags', () => {
  it('given a keyword, then the tag the dictionary gives that keyword', () => {
    expect(Tags.PatientName).toBe(0x00100010);
    expect(lookupTag(Tags.PixelData)?.keyword).toBe('PixelData');
    for (const [keyword, tag] of Object.entries(Tags)) expect(lookupTag(tag)?.keyword).toBe(keyword);
  });
});
