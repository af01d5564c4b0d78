/**
 * The bounded map behind the process caches (catalog documents, series verdicts, frame indexes,
 * retrieve lookups and metadata, verified tokens, ANQ snapshot pins, sharing reads).
 */
import { Lru } from '../../shared/lru';

describe('Lru', () => {
  test('given more entries than its size, then the least recently set goes first', () => {
    const lru = new Lru<number>(2);
    lru.set('a', 1);
    lru.set('b', 2);
    lru.set('c', 3);
    expect([lru.get('a'), lru.get('b'), lru.get('c'), lru.size]).toEqual([undefined, 2, 3, 2]);
  });

  test('given an entry read since it was set, then it outlives one set after it and not read', () => {
    const lru = new Lru<number>(2);
    lru.set('a', 1);
    lru.set('b', 2);
    expect(lru.get('a')).toBe(1);
    lru.set('c', 3);
    expect([lru.get('a'), lru.get('b'), lru.get('c')]).toEqual([1, undefined, 3]);
  });

  test('given a key set again, then it holds the new value and counts once', () => {
    const lru = new Lru<string>(3);
    lru.set('a', 'old');
    lru.set('a', 'new');
    expect([lru.get('a'), lru.size]).toEqual(['new', 1]);
  });

  test('given a deleted key, then it is gone and delete says whether it was there', () => {
    const lru = new Lru<number>(2);
    lru.set('a', 1);
    expect([lru.delete('a'), lru.delete('a'), lru.get('a'), lru.size]).toEqual([true, false, undefined, 0]);
  });

  test('given weights, then the entries kept weigh at most the maximum, the least recently used going first', () => {
    const lru = new Lru<string>(10, (s) => s.length);
    lru.set('a', 'aaaa');
    lru.set('b', 'bbbb');
    expect(lru.get('a')).toBe('aaaa');
    lru.set('c', 'cccc');
    expect([lru.get('a'), lru.get('b'), lru.get('c')]).toEqual(['aaaa', undefined, 'cccc']);
    // A value replaced counts at its new weight only.
    lru.set('a', 'a');
    lru.set('d', 'ddddd');
    expect([lru.get('a'), lru.get('c'), lru.get('d'), lru.size]).toEqual(['a', 'cccc', 'ddddd', 3]);
  });

  test('given a size under one or not whole, then it refuses to be built', () => {
    expect(() => new Lru(0)).toThrow(RangeError);
    expect(() => new Lru(1.5)).toThrow(RangeError);
  });
});
