import { createHmac } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

import type { AccessToken, TokenCredential } from '@azure/core-auth';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';

import { ErrorCodes, fromServiceError } from '../../../shared/errors';
import { BLOB_API_VERSION, BlobHttp, BlobHttpError, encodeBlobPath, sharedKeyStringToSign } from '../../../shared/storage/blobHttp';

const ACCOUNT = 'devstoreaccount1';
const KEY = Buffer.from('a test key of the blob getter').toString('base64');

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void;

/** A storage stand-in on a real socket: each request goes to the handler, in order. */
async function withServer(handler: Handler, run: (base: string, seen: http.IncomingMessage[]) => Promise<void>): Promise<void> {
  const seen: http.IncomingMessage[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req);
    handler(req, res, seen.length);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await run(`http://127.0.0.1:${(server.address() as AddressInfo).port}/${ACCOUNT}`, seen);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

async function readAll(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c);
  return Buffer.concat(chunks);
}

const bytes = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));

/** Answers ranged reads of `bytes` as the service does. */
function serveRange(req: http.IncomingMessage, res: http.ServerResponse, etag = '"0x1"'): void {
  const range = /bytes=(\d+)-(\d*)/.exec(String(req.headers['x-ms-range'] ?? ''));
  const start = range ? Number(range[1]) : 0;
  const end = range && range[2] ? Number(range[2]) : bytes.length - 1;
  const part = bytes.subarray(start, end + 1);
  res.writeHead(range ? 206 : 200, {
    etag,
    'content-length': part.length,
    ...(range ? { 'content-range': `bytes ${start}-${end}/${bytes.length}` } : {}),
    'x-ms-meta-sourceversion': 'v7',
    'content-type': 'application/dicom',
  });
  res.end(part);
}

async function bodyOf(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('BlobHttp.put', () => {
  const chunks = [bytes.subarray(0, 300), bytes.subarray(300)];

  it('given a copy with metadata, tags and a condition, then one signed Put Blob carries all of them and the body', async () => {
    const bodies: Buffer[] = [];
    await withServer(
      (req, res) => {
        void bodyOf(req).then((b) => {
          bodies.push(b);
          res.writeHead(201, { etag: '"0x9"' });
          res.end();
        });
      },
      async (base, seen) => {
        const credential = new StorageSharedKeyCredential(ACCOUNT, KEY);
        const put = await new BlobHttp(base, { kind: 'sharedKey', credential }).put('research', '1.2/3.dcm', chunks, bytes.length, {
          contentType: 'application/dicom',
          metadata: { sourcerank: 'r1', sourcekey: 'ab' },
          tags: { sourcekey: 'ab' },
          ifNoneMatch: '*',
        });
        expect(put.etag).toBe('"0x9"');
        expect(bodies).toEqual([bytes]);
        const h = seen[0]?.headers ?? {};
        expect(seen[0]?.method).toBe('PUT');
        expect(h).toMatchObject({ 'x-ms-blob-type': 'BlockBlob', 'content-length': '1000', 'x-ms-blob-content-type': 'application/dicom', 'x-ms-meta-sourcerank': 'r1', 'x-ms-meta-sourcekey': 'ab', 'x-ms-tags': 'sourcekey=ab', 'if-none-match': '*' });
        const toSign = [
          'PUT', '', '', '1000', '', '', '', '', '', '*', '', '',
          'x-ms-blob-content-type:application/dicom', 'x-ms-blob-type:BlockBlob', `x-ms-date:${String(h['x-ms-date'])}`, 'x-ms-meta-sourcekey:ab', 'x-ms-meta-sourcerank:r1', 'x-ms-tags:sourcekey=ab', `x-ms-version:${BLOB_API_VERSION}`,
          `/${ACCOUNT}/${ACCOUNT}/research/1.2/3.dcm`,
        ].join('\n');
        expect(h.authorization).toBe(`SharedKey ${ACCOUNT}:${createHmac('sha256', Buffer.from(KEY, 'base64')).update(toSign, 'utf8').digest('base64')}`);
      },
    );
  });

  it('given a 503 on the first try, then the whole body is sent again and the write succeeds', async () => {
    const bodies: Buffer[] = [];
    await withServer(
      (req, res, n) => {
        void bodyOf(req).then((b) => {
          bodies.push(b);
          res.writeHead(n === 1 ? 503 : 201, n === 1 ? {} : { etag: '"0x2"' });
          res.end();
        });
      },
      async (base) => {
        expect(await new BlobHttp(base, { kind: 'url' }).put('research', 'x.dcm', chunks, bytes.length, { ifMatch: '"0x1"' })).toEqual({ etag: '"0x2"' });
        expect(bodies).toEqual([bytes, bytes]);
      },
    );
  });

  it.each([
    [409, 'BlobAlreadyExists'],
    [412, 'ConditionNotMet'],
  ])('given a %i on its condition, then it fails at once with that status and code', async (status, code) => {
    await withServer(
      (req, res) => {
        void bodyOf(req).then(() => {
          res.writeHead(status, { 'x-ms-error-code': code });
          res.end();
        });
      },
      async (base, seen) => {
        await expect(new BlobHttp(base, { kind: 'url' }).put('research', 'x.dcm', chunks, bytes.length, { ifNoneMatch: '*' })).rejects.toMatchObject({ statusCode: status, code });
        expect(seen).toHaveLength(1);
      },
    );
  });
});

describe('BlobHttp', () => {
  it('given a ranged, conditional read, then the request asks for that range and version, and the answer carries the range, the ETag and the metadata', async () => {
    await withServer((req, res) => serveRange(req, res), async (base, seen) => {
      const getter = new BlobHttp(base, { kind: 'url' });
      const r = await getter.get('research', 'a/b.dcm', { offset: 10, count: 20, ifMatch: '"0x1"' });
      expect(await readAll(r.body)).toEqual(bytes.subarray(10, 30));
      expect(r).toMatchObject({ status: 206, etag: '"0x1"', contentLength: 20, contentRange: 'bytes 10-29/1000', contentType: 'application/dicom', metadata: { sourceversion: 'v7' } });
      expect(seen[0]?.url).toBe(`/${ACCOUNT}/research/a/b.dcm`);
      expect(seen[0]?.headers).toMatchObject({ 'x-ms-range': 'bytes=10-29', 'if-match': '"0x1"', 'x-ms-version': BLOB_API_VERSION });
    });
  });

  it('given no offset and no count, then no range is asked for and the whole blob comes back', async () => {
    await withServer((req, res) => serveRange(req, res), async (base, seen) => {
      const r = await new BlobHttp(base, { kind: 'url' }).get('research', 'x.dcm');
      expect(r.status).toBe(200);
      expect(seen[0]?.headers['x-ms-range']).toBeUndefined();
      expect(await readAll(r.body)).toEqual(bytes);
    });
  });

  it('given a SAS in the service URL, then each blob URL carries it', async () => {
    await withServer((req, res) => serveRange(req, res), async (base, seen) => {
      const r = await new BlobHttp(`${base}?sv=2025-11-05&sig=abc%2B`, { kind: 'url' }).get('research', 'one two/#3.dcm');
      await readAll(r.body);
      expect(seen[0]?.url).toBe(`/${ACCOUNT}/research/one%20two/%233.dcm?sv=2025-11-05&sig=abc%2B`);
    });
  });

  it('given a Shared Key, then the request is signed over the verb, If-Match, the x-ms- headers and the resource', async () => {
    await withServer((req, res) => serveRange(req, res), async (base, seen) => {
      const credential = new StorageSharedKeyCredential(ACCOUNT, KEY);
      await readAll((await new BlobHttp(base, { kind: 'sharedKey', credential }).get('research', 'a b/c.dcm', { offset: 5, count: 5, ifMatch: '"0x1"' })).body);
      const h = seen[0]?.headers ?? {};
      const toSign = [
        'GET', '', '', '', '', '', '', '', '"0x1"', '', '', '',
        `x-ms-date:${String(h['x-ms-date'])}`, 'x-ms-range:bytes=5-9', `x-ms-version:${BLOB_API_VERSION}`,
        `/${ACCOUNT}/${ACCOUNT}/research/a%20b/c.dcm`,
      ].join('\n');
      const signature = createHmac('sha256', Buffer.from(KEY, 'base64')).update(toSign, 'utf8').digest('base64');
      expect(h.authorization).toBe(`SharedKey ${ACCOUNT}:${signature}`);
    });
  });

  it('given query parameters, then the string to sign lists them sorted, names in lower case', () => {
    const url = new URL(`http://h/${ACCOUNT}/c/b?Snapshot=2&comp=x`);
    expect(sharedKeyStringToSign('GET', ACCOUNT, url, { 'x-ms-version': 'v' }).split('\n').slice(-3)).toEqual([`/${ACCOUNT}/${ACCOUNT}/c/b`, 'comp:x', 'snapshot:2']);
  });

  it('given a token credential, then requests carry its bearer token, fetched once and renewed before it expires', async () => {
    let issued = 0;
    let expiresIn = 60 * 60_000;
    const credential: TokenCredential = {
      getToken: async (scope) => {
        expect(scope).toBe('https://storage.azure.com/.default');
        issued++;
        return { token: `t${issued}`, expiresOnTimestamp: Date.now() + expiresIn } satisfies AccessToken;
      },
    };
    await withServer((req, res) => serveRange(req, res), async (base, seen) => {
      const getter = new BlobHttp(base, { kind: 'bearer', credential });
      for (let i = 0; i < 2; i++) await readAll((await getter.get('research', 'x.dcm', { count: 1 })).body);
      expect(seen.map((r) => r.headers.authorization)).toEqual(['Bearer t1', 'Bearer t1']);
      expect(issued).toBe(1);
      // A token within two minutes of its end is renewed.
      expiresIn = 60_000;
      const fresh = new BlobHttp(base, { kind: 'bearer', credential });
      await readAll((await fresh.get('research', 'x.dcm', { count: 1 })).body);
      await readAll((await fresh.get('research', 'x.dcm', { count: 1 })).body);
      expect(seen.slice(2).map((r) => r.headers.authorization)).toEqual(['Bearer t2', 'Bearer t3']);
    });
  });

  it('given a service client, then requests are authorised as it would: Shared Key for an account key, a bearer token for a token credential, its SAS otherwise', async () => {
    const credential: TokenCredential = { getToken: async () => ({ token: 'tok', expiresOnTimestamp: Date.now() + 3_600_000 }) };
    await withServer((req, res) => serveRange(req, res), async (base, seen) => {
      const read = async (client: BlobServiceClient) => readAll((await BlobHttp.of(client).get('research', 'x.dcm', { count: 1 })).body);
      await read(new BlobServiceClient(base, new StorageSharedKeyCredential(ACCOUNT, KEY)));
      await read(new BlobServiceClient(base, credential));
      await read(new BlobServiceClient(`${base}?sv=2025-11-05&sig=s`));
      expect(seen[0]?.headers.authorization).toMatch(new RegExp(`^SharedKey ${ACCOUNT}:`));
      expect(seen[1]?.headers.authorization).toBe('Bearer tok');
      expect(seen[2]?.headers.authorization).toBeUndefined();
      expect(seen[2]?.url).toBe(`/${ACCOUNT}/research/x.dcm?sv=2025-11-05&sig=s`);
    });
  });

  it('given a 503 then an answer, then the read is tried again and succeeds', async () => {
    await withServer(
      (req, res, n) => (n === 1 ? (res.writeHead(503, { 'x-ms-error-code': 'ServerBusy' }), res.end()) : serveRange(req, res)),
      async (base, seen) => {
        const r = await new BlobHttp(base, { kind: 'url' }).get('research', 'x.dcm', { count: 10 });
        expect(await readAll(r.body)).toEqual(bytes.subarray(0, 10));
        expect(seen).toHaveLength(2);
      },
    );
  });

  it('given a 500 on every try, then it fails after three tries with the status and the service error code', async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(500, { 'content-type': 'application/xml' });
        res.end('<?xml version="1.0"?><Error><Code>InternalError</Code><Message>m</Message></Error>');
      },
      async (base, seen) => {
        const failure = await new BlobHttp(base, { kind: 'url' }).get('research', 'x.dcm').catch((e: unknown) => e);
        expect(failure).toBeInstanceOf(BlobHttpError);
        expect(failure).toMatchObject({ statusCode: 500, code: 'InternalError' });
        expect(seen).toHaveLength(3);
      },
    );
  });

  it.each([
    [404, 'BlobNotFound'],
    [412, 'ConditionNotMet'],
    [416, 'InvalidRange'],
    [403, 'AuthenticationFailed'],
  ])('given a %i, then it fails at once with that status and code', async (status, code) => {
    await withServer(
      (_req, res) => {
        res.writeHead(status, { 'x-ms-error-code': code });
        res.end();
      },
      async (base, seen) => {
        await expect(new BlobHttp(base, { kind: 'url' }).get('research', 'x.dcm')).rejects.toMatchObject({ statusCode: status, code });
        expect(seen).toHaveLength(1);
      },
    );
  });

  it('given a connection refused on every try, then it fails with the network error as its cause', async () => {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    await new Promise((resolve) => server.close(resolve));
    const failure = await new BlobHttp(`http://127.0.0.1:${port}/${ACCOUNT}`, { kind: 'url' }).get('research', 'x.dcm').catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(BlobHttpError);
    expect(failure).toMatchObject({ code: 'ECONNREFUSED' });
    expect(((failure as Error).cause as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
    expect(fromServiceError(failure, 'reading').code).toBe(ErrorCodes.SERVICE_UNAVAILABLE);
  });

  it('given a body that breaks off, then the rest is asked for from the byte reached, of the same version only', async () => {
    await withServer(
      (req, res, n) => {
        if (n > 1) return serveRange(req, res);
        // The first answer promises the whole range and breaks off after 400 bytes.
        res.writeHead(206, { etag: '"0x1"', 'content-length': 1000, 'content-range': 'bytes 0-999/1000' });
        res.write(bytes.subarray(0, 400), () => res.destroy());
      },
      async (base, seen) => {
        const r = await new BlobHttp(base, { kind: 'url' }).get('research', 'x.dcm', { offset: 0, count: 1000 });
        expect(await readAll(r.body)).toEqual(bytes);
        expect(seen).toHaveLength(2);
        expect(seen[1]?.headers).toMatchObject({ 'x-ms-range': 'bytes=400-999', 'if-match': '"0x1"' });
      },
    );
  });

  it('given a body that breaks off and a copy replaced meanwhile, then the read fails with 412 instead of mixing two versions', async () => {
    await withServer(
      (req, res, n) => {
        if (n === 1) {
          res.writeHead(206, { etag: '"0x1"', 'content-length': 1000, 'content-range': 'bytes 0-999/1000' });
          res.write(bytes.subarray(0, 400), () => res.destroy());
          return;
        }
        if (req.headers['if-match'] !== '"0x2"') return void (res.writeHead(412, { 'x-ms-error-code': 'ConditionNotMet' }), res.end());
        serveRange(req, res, '"0x2"');
      },
      async (base) => {
        const r = await new BlobHttp(base, { kind: 'url' }).get('research', 'x.dcm', { offset: 0, count: 1000 });
        await expect(readAll(r.body)).rejects.toMatchObject({ statusCode: 412 });
      },
    );
  });

  it('given an abort before the answer, then it fails without retrying', async () => {
    await withServer(
      () => undefined,
      async (base, seen) => {
        const controller = new AbortController();
        const pending = new BlobHttp(base, { kind: 'url' }).get('research', 'x.dcm', { abortSignal: controller.signal });
        setTimeout(() => controller.abort(), 50);
        const failure = await pending.catch((e: unknown) => e);
        expect((failure as Error).name).toBe('AbortError');
        // The stores map an abort as a time-out (transient), not as a refusal of the client library.
        expect(fromServiceError(failure, 'reading').code).toBe(ErrorCodes.SERVICE_TIMEOUT);
        expect(seen).toHaveLength(1);
      },
    );
  });

  it('given a body that breaks off on every try, then after three resumes it fails as a network failure, which the stores treat as transient', async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(206, { etag: '"0x1"', 'content-length': 1000, 'content-range': 'bytes 0-999/1000' });
        res.write(bytes.subarray(0, 10), () => res.destroy());
      },
      async (base, seen) => {
        const r = await new BlobHttp(base, { kind: 'url' }).get('research', 'x.dcm', { offset: 0, count: 1000 });
        const failure = await readAll(r.body).catch((e: unknown) => e);
        expect(failure).toBeInstanceOf(BlobHttpError);
        expect(seen).toHaveLength(4);
        expect(fromServiceError(failure, 'reading').code).toBe(ErrorCodes.SERVICE_UNAVAILABLE);
      },
    );
  });

  it('given a consumer that stops early, then the connection is closed', async () => {
    let closed = false;
    await withServer(
      (_req, res) => {
        res.writeHead(200, { etag: '"0x1"', 'content-length': 1 << 22 });
        res.write(Buffer.alloc(1 << 16));
        res.on('close', () => (closed = true));
      },
      async (base) => {
        const r = await new BlobHttp(base, { kind: 'url' }).get('research', 'big.dcm');
        for await (const chunk of r.body) {
          expect(chunk.length).toBeGreaterThan(0);
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
        expect(closed).toBe(true);
      },
    );
  });

  it('encodes each segment of a blob name and keeps its slashes', () => {
    expect(encodeBlobPath('1.2.3/a b/ü#?%.dcm')).toBe('1.2.3/a%20b/%C3%BC%23%3F%25.dcm');
  });
});
