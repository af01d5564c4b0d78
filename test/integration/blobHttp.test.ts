/**
 * BlobHttp (shared/storage/blobHttp.ts) against Azurite, which checks Shared Key signatures:
 * blobs named with characters that need encoding, whole and ranged, as the SDK wrote them; the
 * service's 404, 412 and 416 as the stores map them; a SAS URL; Put Blob under its conditions.
 */
import { randomBytes } from 'node:crypto';

import { BlobSASPermissions, BlobServiceClient, ContainerClient } from '@azure/storage-blob';

import { BlobHttp } from '../../shared/storage/blobHttp';
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

describe('BlobHttp against Azurite', () => {
  it('given blobs whose names need encoding, then Shared Key reads of each, whole and ranged, equal what was written', async () => {
    const getter = BlobHttp.of(service);
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
    const getter = BlobHttp.of(service);
    await expect(getter.get(CONTAINER, 'missing.dcm')).rejects.toMatchObject({ statusCode: 404, code: 'BlobNotFound' });
    await expect(getter.get(CONTAINER, 'plain.dcm', { ifMatch: '"0x8D000000000000"' })).rejects.toMatchObject({ statusCode: 412, code: 'ConditionNotMet' });
    await expect(getter.get(CONTAINER, 'plain.dcm', { offset: 10_000_000, count: 10 })).rejects.toMatchObject({ statusCode: 416 });
  });

  it('given a wrong account key, then the read is refused (403), not retried into a success', async () => {
    const wrong = BlobServiceClient.fromConnectionString((testStack().env.SourceStorage ?? '').replace(/AccountKey=[^;]+/, `AccountKey=${randomBytes(64).toString('base64')}`));
    await expect(BlobHttp.of(wrong).get(CONTAINER, 'plain.dcm')).rejects.toMatchObject({ statusCode: 403 });
  });

  it('given Put Blob under each condition, then Azurite stores the bytes, content type, metadata and tags, and refuses a write whose condition fails', async () => {
    const http = BlobHttp.of(service);
    const name = 'written/1.2.3 4+ü.dcm';
    const bytes = randomBytes(300_000);
    const chunks = [bytes.subarray(0, 65_536), bytes.subarray(65_536)];
    const options = { contentType: 'application/dicom', metadata: { sourcerank: 'r1', sourcekey: 'ab12' }, tags: { sourcekey: 'ab12' } };
    const first = await http.put(CONTAINER, name, chunks, bytes.length, { ...options, ifNoneMatch: '*' });
    const blob = container.getBlobClient(name);
    const props = await blob.getProperties();
    expect(first.etag).toBe(props.etag);
    expect(props).toMatchObject({ contentType: 'application/dicom', contentLength: bytes.length, metadata: { sourcerank: 'r1', sourcekey: 'ab12' } });
    expect((await blob.getTags()).tags).toEqual({ sourcekey: 'ab12' });
    expect(await blob.downloadToBuffer()).toEqual(bytes);

    await expect(http.put(CONTAINER, name, chunks, bytes.length, { ...options, ifNoneMatch: '*' })).rejects.toMatchObject({ statusCode: 409 });
    await expect(http.put(CONTAINER, name, chunks, bytes.length, { ...options, ifMatch: '"0x8D000000000000"' })).rejects.toMatchObject({ statusCode: 412 });
    const replaced = bytes.subarray(0, 1000);
    const second = await http.put(CONTAINER, name, [replaced], replaced.length, { ...options, ifMatch: first.etag });
    expect(second.etag).not.toBe(first.etag);
    expect(await blob.downloadToBuffer()).toEqual(replaced);
  });

  it('given a service URL with a SAS, then the read authorises with it', async () => {
    const sas = await container.generateSasUrl({ permissions: BlobSASPermissions.parse('r'), expiresOn: new Date(Date.now() + 600_000) });
    const url = new URL(sas);
    const serviceUrl = `${url.origin}${url.pathname.replace(`/${CONTAINER}`, '')}${url.search}`;
    const name = NAMES[1] as string;
    const r = await new BlobHttp(serviceUrl, { kind: 'url' }).get(CONTAINER, name);
    expect(await readAll(r.body)).toEqual(content.get(name));
  });
});
