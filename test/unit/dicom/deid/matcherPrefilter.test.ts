import { containsIdentifying, identifyingMatchers, scrubText, ValueMatcher } from '../../../../shared/dicom/deid/identifying';

describe('identifying-value matchers (with their substring pre-check)', () => {
  const matchers = identifyingMatchers(['Smithers', 'MRN4455667', '20210315']);

  it('given any letter case, then a value is found', () => {
    expect(containsIdentifying('seen by SMITHERS today', matchers)).toBe(true);
    expect(containsIdentifying('mrn4455667', matchers)).toBe(true);
  });

  it('given a long s (which case-folds to s), then the value is still found', () => {
    expect(containsIdentifying('seen by \u017fmithers', matchers)).toBe(true);
  });

  it('given a date in another spelling, then it is found', () => {
    expect(containsIdentifying('on 15.03.2021', matchers)).toBe(true);
  });

  it('given text without any value, then nothing is found and scrubbing leaves it unchanged', () => {
    expect(containsIdentifying('axial 5 mm, contrast', matchers)).toBe(false);
    expect(scrubText('axial 5 mm, contrast', matchers)).toBe('axial 5 mm, contrast');
  });

  it('given the same values for another file, then matching still works (matchers are shared)', () => {
    const again = identifyingMatchers(['Smithers']);
    expect(scrubText('Smithers follow-up', again)).toBe('follow-up');
    expect(scrubText('Smithers follow-up', again)).toBe('follow-up');
  });

  it('given a non-ASCII value, then it is found in any letter case and only at word boundaries', () => {
    const m = identifyingMatchers(['Müller']);
    expect(containsIdentifying('Dr. MÜLLER', m)).toBe(true);
    expect(containsIdentifying('Müllerstraße', m)).toBe(false);
  });

  it('given a text holding a value only inside a longer word or UID, then it is not found', () => {
    const m = new ValueMatcher('1.2.3');
    expect(m.test('1.2.3.4')).toBe(false);
    expect(m.test('uid 1.2.3 here')).toBe(true);
    expect(new ValueMatcher('Smith').test('Smithers')).toBe(false);
  });

  it('given many tests of the same matcher, then each starts from the beginning of its text', () => {
    const m = new ValueMatcher('Smith');
    expect(m.regex.flags).toContain('g');
    for (let i = 0; i < 3; i++) expect(m.test('Mr Smith')).toBe(true);
  });
});
