/**
 * BlobGetter (shared/storage/blobGet.ts) against Azurite, which checks Shared Key signatures:
 * blobs named with characters that need encoding, whole and ranged, as the SDK wrote them; the
 * service's 404, 412 and 416 as the stores map them; a SAS URL.
 */
import { randomBytes } from 'node:crypto';

import { BlobSASPermissions, BlobServiceClient, ContainerClient } from '@azure/storage-blob';

import { BlobGetter } from '../../shared/storage/blobGet';
import { testStack } from './stackEnv';

const CONTAINER = 'blob-get-test';
const NAMES = ['plain.dcm', '1.2.826.0.1/series 2/a b+c.dcm', 'ü/日本/%41#?&=;.dcm', "quote'(1)!*~.dcm", 'deep/er/still/x'];

let service: BlobServiceClient;
let container: ContainerClient;
const content = new Map<string, Buffer>();

async function readAll(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c);
  return Buffer.concat(chunks);
}

beforeAll(async () => {
  service = BlobServiceClient.fromConnectionString(testStack().env.SourceStorage ?? '');
  container = service.getContainerClient(CONTAINER);
  await container.createIfNotExists();
  for (const [i, name] of NAMES.entries()) {
    const bytes = randomBytes(100_000 + i * 7919);
    content.set(name, bytes);
    await container.getBlockBlobClient(name).uploadData(bytes, { metadata: { sourceversion: `v${i}` } });
  }
});

describe('BlobGetter against Azurite', () => {
  it('given blobs whose names need encoding, then Shared Key reads of each, whole and ranged, equal what was written', async () => {
    const getter = BlobGetter.of(service);
    for (const [i, name] of NAMES.entries()) {
      const bytes = content.get(name) as Buffer;
      const whole = await getter.get(CONTAINER, name);
      expect(await readAll(whole.body)).toEqual(bytes);
      expect(whole.metadata.sourceversion).toBe(`v${i}`);
      const ranged = await getter.get(CONTAINER, name, { offset: 1000, count: 5000, ifMatch: whole.etag });
      expect(await readAll(ranged.body)).toEqual(bytes.subarray(1000, 6000));
      expect(ranged.contentRange).toBe(`bytes 1000-5999/${bytes.length}`);
    }
  });

  it('given a missing blob, a stale ETag and a range past the end, then the service statuses come back as 404, 412 and 416', async () => {
    const getter = BlobGetter.of(service);
    await expect(getter.get(CONTAINER, 'missing.dcm')).rejects.toMatchObject({ statusCode: 404, code: 'BlobNotFound' });
    await expect(getter.get(CONTAINER, 'plain.dcm', { ifMatch: '"0x8D000000000000"' })).rejects.toMatchObject({ statusCode: 412, code: 'ConditionNotMet' });
    await expect(getter.get(CONTAINER, 'plain.dcm', { offset: 10_000_000, count: 10 })).rejects.toMatchObject({ statusCode: 416 });
  });

  it('given a wrong account key, then the read is refused (403), not retried into a success', async () => {
    const wrong = BlobServiceClient.fromConnectionString((testStack().env.SourceStorage ?? '').replace(/AccountKey=[^;]+/, `AccountKey=${randomBytes(64).toString('base64')}`));
    await expect(BlobGetter.of(wrong).get(CONTAINER, 'plain.dcm')).rejects.toMatchObject({ statusCode: 403 });
  });

  it('given a service URL with a SAS, then the read authorises with it', async () => {
    const sas = await container.generateSasUrl({ permissions: BlobSASPermissions.parse('r'), expiresOn: new Date(Date.now() + 600_000) });
    const url = new URL(sas);
    const serviceUrl = `${url.origin}${url.pathname.replace(`/${CONTAINER}`, '')}${url.search}`;
    const name = NAMES[1] as string;
    const r = await new BlobGetter(serviceUrl, { kind: 'url' }).get(CONTAINER, name);
    expect(await readAll(r.body)).toEqual(content.get(name));
  });
});
