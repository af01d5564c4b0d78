import { findDates } from '../../../../../shared/dicom/deid/freeText/dates';

describe('findDates, remembered by text', () => {
  const text = 'Follow-up of the scan of 4 March 2019, compared with 20190101; 5/5mm slices';

  it('given the same text again, then the same dates are found, and a caller changing its spans changes nothing for the next', () => {
    const first = findDates(text);
    expect(first.map((s) => text.slice(s.start, s.end))).toEqual(['20190101', '4 March 2019']);
    first[0]!.start = 0;
    first.push({ start: 0, end: 1, kind: 'date' });
    const again = findDates(text);
    expect(again.map((s) => text.slice(s.start, s.end))).toEqual(['20190101', '4 March 2019']);
    expect(again).not.toBe(first);
  });

  it('given a text longer than those remembered, then its dates are still found', () => {
    const long = `${'x '.repeat(800)}born 4 March 1961 ${'y '.repeat(800)}`;
    expect(findDates(long).map((s) => long.slice(s.start, s.end))).toEqual(['4 March 1961']);
    expect(findDates(long).map((s) => long.slice(s.start, s.end))).toEqual(['4 March 1961']);
  });

  it('given many distinct texts, then each one\'s own dates come back, not another\'s', () => {
    const texts = Array.from({ length: 3000 }, (_, i) => `seen ${(i % 28) + 1} May ${1950 + (i % 70)} (case ${i})`);
    for (let round = 0; round < 2; round++) {
      for (const t of texts) {
        const [span] = findDates(t);
        expect(span && t.slice(span.start, span.end)).toBe(/\d+ May \d{4}/.exec(t)?.[0]);
      }
    }
  });
});
