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

describe('multipartBody chunks', () => {
  const part = (length: number | undefined, sizes: number[]): Part => ({
    contentType: 'application/octet-stream',
    ...(length !== undefined ? { length } : {}),
    open: async () => chunks(sizes),
  });

  test('given a frame of known length read in pieces, then the whole answer goes out as one chunk', async () => {
    const out = await all(multipartBody([part(3 * 65536, [65536, 65536, 65536])], 'b1'));
    expect(out).toHaveLength(1);
    const text = Buffer.from(out[0] as Uint8Array).toString('latin1');
    expect(text.startsWith('--b1\r\nContent-Type: application/octet-stream\r\nContent-Length: 196608\r\n\r\n')).toBe(true);
    expect(text.endsWith('\r\n--b1--\r\n')).toBe(true);
  });

  test('given a part of unknown length, then its pieces pass as they come, each its own chunk', async () => {
    const out = await all(multipartBody([part(undefined, [65536, 65536, 65536])], 'b2'));
    // Headers, the three pieces, the CRLF, the close delimiter.
    expect(out.map((c) => c.length).filter((n) => n === 65536)).toHaveLength(3);
    expect(out).toHaveLength(6);
  });

  test('given known-length parts beyond 4 MiB in all, then they go out in chunks of about 4 MiB, not held whole', async () => {
    const frame = 1024 * 1024;
    const parts = Array.from({ length: 10 }, () => part(frame, [frame / 2, frame / 2]));
    const out = await all(multipartBody(parts, 'b3'));
    expect(out.length).toBeGreaterThanOrEqual(3);
    for (const c of out) expect(c.length).toBeLessThan(5 * frame + 1024);
    expect(Buffer.concat(out).length).toBe(multipartLength(parts, 'b3'));
  });
});
