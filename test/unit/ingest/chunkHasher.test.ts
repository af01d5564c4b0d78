import { createHash } from 'node:crypto';

import { mulberry32 } from '../../../bench/generate';
import { bufferReader, ByteReader, InlineSha256 } from '../../../shared/dicom/byteReader';
import { OFF_THREAD_HASH_MIN_BYTES, OffThreadSha256, sha256For, stopHashWorker } from '../../../shared/ingest/chunkHasher';

function randomBytes(n: number, seed: number): Buffer {
  const next = mulberry32(seed);
  const words = new Uint32Array(Math.ceil(n / 4));
  for (let i = 0; i < words.length; i++) words[i] = next();
  return Buffer.from(words.buffer, 0, n);
}

function shared(data: Buffer): Buffer {
  const b = Buffer.from(new SharedArrayBuffer(data.length + 16), 8, data.length);
  data.copy(b);
  return b;
}

afterAll(() => stopHashWorker());

describe('SHA-256 on the hashing thread', () => {
  it('given chunks of many sizes, in ordinary and shared memory, then the digest equals a one-shot SHA-256', async () => {
    const data = randomBytes(5 * 1024 * 1024 + 333, 7);
    const hasher = new OffThreadSha256();
    const sizes = [1, 17, 4096, 1024 * 1024, 3 * 1024 * 1024 + 5, 65536];
    for (let at = 0, i = 0; at < data.length; i++) {
      const n = Math.min(sizes[i % sizes.length]!, data.length - at);
      const part = data.subarray(at, at + n);
      hasher.update(i % 3 === 2 ? shared(part) : part);
      at += n;
    }
    expect(await hasher.digest()).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('given a shared buffer consumed in small contiguous pieces, with gaps and ordinary chunks between, then the digest is of exactly those bytes in order', async () => {
    const data = shared(randomBytes(3 * 1024 * 1024, 14));
    const expected = createHash('sha256');
    const hasher = new OffThreadSha256();
    const add = (b: Buffer) => {
      hasher.update(b);
      expected.update(b);
    };
    let at = 0;
    for (let i = 0; at < data.length; i++) {
      const n = Math.min(1 + ((i * 37) % 300), data.length - at);
      add(data.subarray(at, at + n));
      at += n;
      if (i % 500 === 0) add(Buffer.from(`ordinary ${i}`));
      // A gap: these bytes are skipped, so the next piece is not contiguous with the last one.
      if (i % 777 === 0) at += 13;
    }
    expect(await hasher.digest()).toBe(expected.digest('hex'));
  });

  it('given an ordinary chunk changed right after update, then the digest is of the bytes as they were (they were copied)', async () => {
    const data = randomBytes(300_000, 8);
    const expected = createHash('sha256').update(data).digest('hex');
    const hasher = new OffThreadSha256();
    hasher.update(data);
    data.fill(0);
    expect(await hasher.digest()).toBe(expected);
  });

  it('given a shared chunk, then settled() resolves once it is hashed, and it may be reused from then on', async () => {
    const data = randomBytes(2 * 1024 * 1024, 9);
    const expected = createHash('sha256').update(data).digest('hex');
    const chunk = shared(data);
    const hasher = new OffThreadSha256();
    hasher.update(chunk);
    await hasher.settled();
    chunk.fill(0xff);
    expect(await hasher.digest()).toBe(expected);
  });

  it('given more than its limit posted without waiting, then ready() asks the reader to wait until the thread catches up', async () => {
    const chunk = shared(randomBytes(4 * 1024 * 1024, 10));
    const hasher = new OffThreadSha256();
    for (let i = 0; i < 6; i++) hasher.update(chunk);
    const wait = hasher.ready();
    expect(wait).toBeInstanceOf(Promise);
    await wait;
    expect(hasher.ready()).toBeUndefined();
    const expected = createHash('sha256');
    for (let i = 0; i < 6; i++) expected.update(chunk);
    expect(await hasher.digest()).toBe(expected.digest('hex'));
  });

  it('given several streams at once, then each gets the digest of its own bytes', async () => {
    const inputs = [1, 2, 3, 4].map((s) => randomBytes(1_500_000 + s * 1000, s));
    const hashers = inputs.map(() => new OffThreadSha256());
    for (let at = 0; at < 1_600_000; at += 100_000) inputs.forEach((d, i) => at < d.length && hashers[i]!.update(d.subarray(at, at + 100_000)));
    const digests = await Promise.all(hashers.map((h) => h.digest()));
    expect(digests).toEqual(inputs.map((d) => createHash('sha256').update(d).digest('hex')));
  });

  it('given the thread stops mid-stream, then the digest fails with a clear error instead of waiting forever, and the next stream works', async () => {
    const hasher = new OffThreadSha256();
    hasher.update(randomBytes(1024, 11));
    await stopHashWorker();
    // A transient error (SERVICE_UNAVAILABLE): the ingestion rethrows it and Event Grid delivers the event again.
    await expect(hasher.digest()).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE', message: expect.stringMatching(/hashing thread/) });
    const next = new OffThreadSha256();
    next.update(Buffer.from('abc'));
    expect(await next.digest()).toBe(createHash('sha256').update('abc').digest('hex'));
  });

  it('given an abandoned stream, then later streams are unaffected', async () => {
    const a = new OffThreadSha256();
    a.update(randomBytes(2 * 1024 * 1024, 12));
    a.abort();
    const b = new OffThreadSha256();
    b.update(Buffer.from('xyz'));
    expect(await b.digest()).toBe(createHash('sha256').update('xyz').digest('hex'));
  });
});

describe('choosing the hasher and reading through it', () => {
  it('given a source below the threshold, then it is hashed inline; at or above, on the thread', () => {
    expect(sha256For(OFF_THREAD_HASH_MIN_BYTES - 1)).toBeInstanceOf(InlineSha256);
    const big = sha256For(OFF_THREAD_HASH_MIN_BYTES);
    expect(big).toBeInstanceOf(OffThreadSha256);
    (big as OffThreadSha256).abort();
  });

  it('given a ByteReader with the thread hasher, then sha256() of a drained source equals the inline one', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 7, 13);
    async function* chunks() {
      for (let at = 0; at < data.length; at += 65536) yield data.subarray(at, at + 65536);
    }
    const threaded = new ByteReader(chunks(), { hasher: new OffThreadSha256() });
    await threaded.read(132);
    await threaded.drain();
    const inline = bufferReader(data, { sha256: true });
    await inline.drain();
    expect(await threaded.sha256()).toBe(await inline.sha256());
  });
});
