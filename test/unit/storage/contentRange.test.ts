import { totalOfContentRange } from '../../../shared/storage/stores';

describe('the blob size from a ranged response', () => {
  it('given a Content-Range, then the size is the number after the slash', () => {
    expect(totalOfContentRange('bytes 0-4194303/21234567')).toBe(21234567);
    expect(totalOfContentRange('bytes 0-99/100')).toBe(100);
  });

  it('given no Content-Range or an unknown total, then there is no size from it', () => {
    expect(totalOfContentRange(undefined)).toBeUndefined();
    expect(totalOfContentRange('bytes 0-99/*')).toBeUndefined();
  });
});
