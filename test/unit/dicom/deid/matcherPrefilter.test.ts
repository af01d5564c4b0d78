import { containsIdentifying, identifyingMatchers, scrubText } from '../../../../shared/dicom/deid/identifying';

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
});
