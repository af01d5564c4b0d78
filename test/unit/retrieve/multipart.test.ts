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

  test('given a frame of known length read in 64 KiB pieces, then its headers go out with the first piece and the other pieces as they come, uncopied', async () => {
    const pieces: Uint8Array[] = [];
    const source = chunks([65536, 65536, 65536]);
    const frame: Part = {
      contentType: 'application/octet-stream',
      length: 3 * 65536,
      open: async () =>
        (async function* () {
          for await (const c of source) {
            pieces.push(c);
            yield c;
          }
        })(),
    };
    const out = await all(multipartBody([frame], 'b1'));
    const head = '--b1\r\nContent-Type: application/octet-stream\r\nContent-Length: 196608\r\n\r\n';
    // The headers with the first piece, the second and third pieces, then the CRLF with the close delimiter.
    expect(out.map((c) => c.length)).toEqual([head.length + 65536, 65536, 65536, 10]);
    expect(Buffer.from(out[0] as Uint8Array).toString('latin1').startsWith(head)).toBe(true);
    expect(Buffer.from(out[0] as Uint8Array).subarray(head.length).equals(pieces[0] as Uint8Array)).toBe(true);
    expect(out[1]).toBe(pieces[1]);
    expect(out[2]).toBe(pieces[2]);
    expect(Buffer.from(out[3] as Uint8Array).toString('latin1')).toBe('\r\n--b1--\r\n');
  });

  test('given many small frames, then they are gathered into chunks of at least 64 KiB, in order', async () => {
    const parts = Array.from({ length: 200 }, () => part(1000, [400, 600]));
    const out = await all(multipartBody(parts, 'b4'));
    expect(out.length).toBeGreaterThanOrEqual(3);
    expect(out.length).toBeLessThanOrEqual(5);
    for (const c of out.slice(0, -1)) expect(c.length).toBeGreaterThanOrEqual(65536);
    const body = Buffer.concat(out);
    expect(body.length).toBe(multipartLength(parts, 'b4'));
    expect(body.toString('latin1').split('--b4\r\n')).toHaveLength(201);
  });

  test('given a part of unknown length, then its pieces pass as they come, each its own chunk', async () => {
    const out = await all(multipartBody([part(undefined, [65536, 65536, 65536])], 'b2'));
    // Headers, the three pieces, the CRLF, the close delimiter.
    expect(out.map((c) => c.length).filter((n) => n === 65536)).toHaveLength(3);
    expect(out).toHaveLength(6);
  });

  test('given known-length frames of 1 MiB read in halves, then no chunk holds more than a piece and its framing', async () => {
    const frame = 1024 * 1024;
    const parts = Array.from({ length: 10 }, () => part(frame, [frame / 2, frame / 2]));
    const out = await all(multipartBody(parts, 'b3'));
    expect(out.length).toBeGreaterThanOrEqual(20);
    for (const c of out) expect(c.length).toBeLessThan(frame / 2 + 1024);
    expect(Buffer.concat(out).length).toBe(multipartLength(parts, 'b3'));
  });
});
