/**
 * BlobHttp (shared/storage/blobHttp.ts) against Azurite, which checks Shared Key signatures:
 * blobs named with characters that need encoding, whole and ranged, as the SDK wrote them; the
 * service's 404, 412 and 416 as the stores map them; a SAS URL; Put Blob under its conditions.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';

import type { AccessToken, TokenCredential } from '@azure/core-auth';
import { BlobServiceClient, ContainerClient, ContainerSASPermissions, StorageSharedKeyCredential } from '@azure/storage-blob';

import { AZURITE_ACCOUNT, AZURITE_KEY } from '../../local/emulators';
import { type AzuriteHandle, startAzurite } from '../../local/services/azurite';
import { BlobHttp, sharedKeyStringToSign } from '../../shared/storage/blobHttp';
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
    const sas = await container.generateSasUrl({ permissions: ContainerSASPermissions.parse('r'), expiresOn: new Date(Date.now() + 600_000) });
    const url = new URL(sas);
    const serviceUrl = `${url.origin}${url.pathname.replace(`/${CONTAINER}`, '')}${url.search}`;
    const name = NAMES[1] as string;
    const r = await new BlobHttp(serviceUrl, { kind: 'url' }).get(CONTAINER, name);
    expect(await readAll(r.body)).toEqual(content.get(name));
  });
});

/**
 * The managed-identity path: Azurite over HTTPS (a certificate made for the test) with bearer
 * tokens on (`--oauth basic`: it checks a token's form, lifetime, issuer and audience). The
 * credential stands in for a managed identity: it gives tokens of the form Entra ID gives for
 * storage, unsigned, and counts how often it is asked.
 */
describe('BlobHttp with a bearer token over HTTPS (Azurite with OAuth)', () => {
  let dir: string;
  let azurite: AzuriteHandle;
  let serviceUrl: string;
  let agents: { http: http.Agent; https: https.Agent };
  let issued = 0;

  const base64url = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const credential: TokenCredential = {
    getToken: async (scope): Promise<AccessToken> => {
      if (scope !== 'https://storage.azure.com/.default') throw new Error(`unexpected scope ${String(scope)}`);
      issued++;
      const now = Math.floor(Date.now() / 1000);
      const claims = { aud: 'https://storage.azure.com', iss: `https://sts.windows.net/${randomUUID()}/`, iat: now - 60, nbf: now - 60, exp: now + 3600, oid: randomUUID() };
      return { token: `${base64url({ alg: 'RS256', typ: 'JWT' })}.${base64url(claims)}.c2lnbmF0dXJl`, expiresOnTimestamp: (now + 3600) * 1000 };
    },
  };

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blobhttp-tls-'));
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    azurite = await startAzurite({ blobPort: 0, queuePort: 0, tls: { cert, key, oauth: true } });
    serviceUrl = `https://127.0.0.1:${azurite.blobPort}/${AZURITE_ACCOUNT}`;
    agents = { http: new http.Agent(), https: new https.Agent({ keepAlive: true, ca: fs.readFileSync(cert) }) };
    // The container, made with the account key (Create Container is not part of BlobHttp).
    const url = new URL(`${serviceUrl}/bearer?restype=container`);
    const headers: Record<string, string> = { 'content-length': '0', 'x-ms-date': new Date().toUTCString(), 'x-ms-version': '2025-11-05' };
    const account = new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY);
    headers.authorization = `SharedKey ${AZURITE_ACCOUNT}:${account.computeHMACSHA256(sharedKeyStringToSign('PUT', AZURITE_ACCOUNT, url, headers))}`;
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const req = https.request(url, { method: 'PUT', headers, agent: agents.https }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(201);
  }, 60_000);

  afterAll(async () => {
    agents?.https.destroy();
    await azurite?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('given a token credential, then Put Blob and Get Blob are authorised with one bearer token, and a request without it, or with a token for another audience, is refused', async () => {
    const bearer = new BlobHttp(serviceUrl, { kind: 'bearer', credential }, agents);
    const bytes = randomBytes(200_000);
    const put = await bearer.put('bearer', '1.2.3/4.dcm', [bytes], bytes.length, { contentType: 'application/dicom', metadata: { sourceversion: 'v1' }, tags: { sourcekey: 'ab' }, ifNoneMatch: '*' });
    const whole = await bearer.get('bearer', '1.2.3/4.dcm');
    const chunks: Buffer[] = [];
    for await (const c of whole.body) chunks.push(c);
    expect(Buffer.concat(chunks)).toEqual(bytes);
    expect(whole).toMatchObject({ etag: put.etag, contentType: 'application/dicom', metadata: { sourceversion: 'v1' } });
    const ranged = await bearer.get('bearer', '1.2.3/4.dcm', { offset: 100, count: 50, ifMatch: put.etag });
    const part: Buffer[] = [];
    for await (const c of ranged.body) part.push(c);
    expect(Buffer.concat(part)).toEqual(bytes.subarray(100, 150));
    expect(issued).toBe(1);

    await expect(new BlobHttp(serviceUrl, { kind: 'url' }, agents).get('bearer', '1.2.3/4.dcm')).rejects.toMatchObject({ statusCode: 403 });
    // A token for another audience (Azure Resource Manager) is refused: the success above is the token's.
    const otherAudience: TokenCredential = {
      getToken: async () => {
        const now = Math.floor(Date.now() / 1000);
        const claims = { aud: 'https://management.azure.com', iss: `https://sts.windows.net/${randomUUID()}/`, iat: now - 60, nbf: now - 60, exp: now + 3600 };
        return { token: `${base64url({ alg: 'RS256', typ: 'JWT' })}.${base64url(claims)}.c2lnbmF0dXJl`, expiresOnTimestamp: (now + 3600) * 1000 };
      },
    };
    await expect(new BlobHttp(serviceUrl, { kind: 'bearer', credential: otherAudience }, agents).get('bearer', '1.2.3/4.dcm')).rejects.toMatchObject({ statusCode: 403 });
  });

  it('given the certificate not trusted, then the read fails on it rather than going on unverified', async () => {
    const untrusting = new BlobHttp(serviceUrl, { kind: 'bearer', credential });
    const failure = await untrusting.get('bearer', '1.2.3/4.dcm').catch((e: unknown) => e);
    expect(((failure as Error).cause as NodeJS.ErrnoException).code).toMatch(/CERT|SELF_SIGNED/);
  });
});
