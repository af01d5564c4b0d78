import { multipartBody, multipartLength, type Part } from '../../../shared/retrieve/multipart';

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
