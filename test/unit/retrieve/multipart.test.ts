import { coalesced, multipartBody, multipartLength, type Part } from '../../../shared/retrieve/multipart';

async function* chunks(sizes: number[], fill = (i: number) => i % 251): AsyncGenerator<Uint8Array> {
  let n = 0;
  for (const size of sizes) {
    const c = new Uint8Array(size);
    for (let i = 0; i < size; i++) c[i] = fill(n++);
    yield c;
  }
}

async function all(source: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of source) out.push(c);
  return out;
}

const joined = (cs: Uint8Array[]) => Buffer.concat(cs);

describe('coalesced', () => {
  test('given small chunks, then the same bytes in order, in chunks of at least the minimum but the last', async () => {
    const sizes = [10, 300, 5, 1000, 64, 64, 64, 7];
    const out = await all(coalesced(chunks(sizes), 256));
    expect(joined(out).equals(joined(await all(chunks(sizes))))).toBe(true);
    for (const c of out.slice(0, -1)) expect(c.length).toBeGreaterThanOrEqual(256);
    expect(out.length).toBeLessThan(sizes.length);
  });

  test('given a chunk already as large as the minimum with nothing held, then it passes as it is', async () => {
    const big = new Uint8Array(512);
    const out = await all(coalesced((async function* () { yield big; })(), 256));
    expect(out).toHaveLength(1);
    expect(out[0]).toBe(big);
  });

  test('given the reader stops early, then the source is ended too', async () => {
    let ended = false;
    const source = (async function* () {
      try {
        for (;;) yield new Uint8Array(300);
      } finally {
        ended = true;
      }
    })();
    for await (const c of coalesced(source, 256)) {
      expect(c.length).toBe(300);
      break;
    }
    expect(ended).toBe(true);
  });
});

describe('multipartLength', () => {
  const part = (length: number | undefined, bytes: number, location?: string): Part => ({
    contentType: 'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1',
    ...(length !== undefined ? { length } : {}),
    ...(location ? { location } : {}),
    open: async () => chunks([bytes]),
  });

  test('given parts of known lengths, then it equals the length of the body written', async () => {
    const parts = [part(1000, 1000, 'http://h/frames/1'), part(70_000, 70_000), part(0, 0, 'http://h/frames/3')];
    const body = joined(await all(multipartBody(parts, 'b0b0')));
    expect(multipartLength(parts, 'b0b0')).toBe(body.length);
  });

  test('given a part of unknown length, then undefined', () => {
    expect(multipartLength([part(10, 10), part(undefined, 10)], 'b')).toBeUndefined();
  });
});
