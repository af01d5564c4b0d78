import { createHash } from 'node:crypto';

import { ByteReader } from '../../../shared/dicom/byteReader';

/** `data` from `offset` on, in odd-sized chunks; counts the streams still open. */
function source(data: Buffer, offset: number, open: { n: number }): AsyncGenerator<Uint8Array> {
  return (async function* () {
    open.n++;
    try {
      for (let o = offset; o < data.length; o += 333) yield data.subarray(o, Math.min(data.length, o + 333));
    } finally {
      open.n--;
    }
  })();
}

describe('ByteReader suspend and resume', () => {
  it('given a reader suspended mid-way, then its buffered bytes are dropped and its source closed; resumed from a source at its position, it reads on and hashes the whole source once', async () => {
    const data = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) % 251));
    const open = { n: 0 };
    const reader = new ByteReader(source(data, 0, open), { sha256: true });
    const head = await reader.read(1000);
    await reader.fill(1500);
    expect(reader.bufferedBytes).toBeGreaterThan(0);
    await reader.suspend();
    expect([reader.bufferedBytes, open.n, reader.position]).toEqual([0, 0, 1000]);
    // Nothing can be read while suspended.
    await expect(reader.read(1)).rejects.toMatchObject({ code: 'DICOM_TRUNCATED' });
    reader.resume(source(data, reader.position, open));
    const rest = await reader.read(4000);
    expect(Buffer.concat([head, rest]).equals(data)).toBe(true);
    expect(await reader.atEnd()).toBe(true);
    expect(await reader.sha256()).toBe(createHash('sha256').update(data).digest('hex'));
  });
});
