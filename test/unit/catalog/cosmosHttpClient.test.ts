import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as zlib from 'node:zlib';

import { createHttpHeaders, createPipelineRequest, RestError } from '@azure/core-rest-pipeline';
import { CosmosClient } from '@azure/cosmos';

import { CosmosHttpClient } from '../../../shared/catalog/cosmosHttpClient';
import { withServer } from './cosmosStandIn';

const client = new CosmosHttpClient();

describe('CosmosHttpClient (the Cosmos DB SDK transport)', () => {
  it('given a request, then its method, path, headers and text body go out, and the answer comes back as status, headers and text', async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(201, { 'content-type': 'application/json', 'x-ms-session-token': '0:-1#12', etag: '"e1"' });
        res.end('{"id":"a","ü":"ß"}');
      },
      async (base, seen) => {
        const request = createPipelineRequest({
          url: `${base}/dbs/d/colls/c/docs`,
          method: 'POST',
          headers: createHttpHeaders({ 'x-ms-documentdb-partitionkey': '["p"]', 'Content-Type': 'application/json' }),
          body: '{"id":"a","ü":"ß"}',
          allowInsecureConnection: true,
        });
        const response = await client.sendRequest(request);
        expect(response.status).toBe(201);
        expect(response.headers.get('x-ms-session-token')).toBe('0:-1#12');
        expect(response.headers.get('ETag')).toBe('"e1"');
        expect(response.bodyAsText).toBe('{"id":"a","ü":"ß"}');
        expect(response.request).toBe(request);
        expect(seen[0]?.method).toBe('POST');
        expect(seen[0]?.url).toBe('/dbs/d/colls/c/docs');
        expect(seen[0]?.headers['x-ms-documentdb-partitionkey']).toBe('["p"]');
        expect(seen[0]?.headers['content-length']).toBe(String(Buffer.byteLength('{"id":"a","ü":"ß"}')));
        expect(seen[0]?.body).toBe('{"id":"a","ü":"ß"}');
      },
    );
  });

  it('given a gzip answer, then its text is decoded', async () => {
    await withServer(
      (_req, res) => {
        res.writeHead(200, { 'content-encoding': 'gzip' });
        res.end(zlib.gzipSync('{"Documents":[]}'));
      },
      async (base) => {
        const response = await client.sendRequest(createPipelineRequest({ url: `${base}/dbs/d`, method: 'GET', allowInsecureConnection: true }));
        expect(response.bodyAsText).toBe('{"Documents":[]}');
      },
    );
  });

  it('given plain HTTP the request does not allow, then it is refused before anything is sent', async () => {
    await withServer(
      (_req, res) => res.end('{}'),
      async (base, seen) => {
        await expect(client.sendRequest(createPipelineRequest({ url: `${base}/dbs/d`, method: 'GET' }))).rejects.toMatchObject({ code: RestError.REQUEST_SEND_ERROR });
        expect(seen).toHaveLength(0);
      },
    );
  });

  it('given an abort while the answer is awaited, then it rejects with an AbortError and the request is dropped', async () => {
    let closed!: Promise<void>;
    await withServer(
      (req) => {
        // Never answered: only the abort ends the call.
        closed = new Promise((resolve) => req.socket.once('close', () => resolve()));
      },
      async (base, seen) => {
        const controller = new AbortController();
        const call = client.sendRequest(createPipelineRequest({ url: `${base}/dbs/d/colls/c/docs/x`, method: 'GET', abortSignal: controller.signal, allowInsecureConnection: true }));
        while (seen.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
        controller.abort();
        await expect(call).rejects.toMatchObject({ name: 'AbortError' });
        await closed;
      },
    );
    const aborted = new AbortController();
    aborted.abort();
    await expect(client.sendRequest(createPipelineRequest({ url: 'http://127.0.0.1:9/x', method: 'GET', abortSignal: aborted.signal, allowInsecureConnection: true }))).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('given a request time-out that passes unanswered, then an AbortError; and a request for a streamed answer is refused', async () => {
    await withServer(
      () => undefined,
      async (base) => {
        const started = Date.now();
        await expect(client.sendRequest(createPipelineRequest({ url: `${base}/dbs/d`, method: 'GET', timeout: 50, allowInsecureConnection: true }))).rejects.toMatchObject({ name: 'AbortError' });
        expect(Date.now() - started).toBeLessThan(5000);
        const streamed = createPipelineRequest({ url: `${base}/dbs/d`, method: 'GET', allowInsecureConnection: true, streamResponseStatusCodes: new Set([200]) });
        await expect(client.sendRequest(streamed)).rejects.toBeInstanceOf(RestError);
      },
    );
  });

  it('given a refused connection or an answer cut off, then a RestError with the socket code (what the SDK retry policy reads), naming no URL', async () => {
    const free = http.createServer();
    await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
    const port = (free.address() as AddressInfo).port;
    await new Promise((resolve) => free.close(resolve));
    const refused = client.sendRequest(createPipelineRequest({ url: `http://127.0.0.1:${port}/dbs/d/colls/c/docs/instance:2.25.1`, method: 'GET', allowInsecureConnection: true }));
    await expect(refused).rejects.toBeInstanceOf(RestError);
    await expect(refused).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await refused.catch((e: Error) => expect(e.message).not.toContain('2.25.1'));

    await withServer(
      (_req, res) => {
        res.writeHead(200, { 'content-length': '100' });
        res.write('{"id":');
        setTimeout(() => res.socket?.destroy(), 10);
      },
      async (base) => {
        const cut = client.sendRequest(createPipelineRequest({ url: `${base}/dbs/d/colls/c/docs/instance:2.25.1`, method: 'GET', allowInsecureConnection: true }));
        await expect(cut).rejects.toMatchObject({ code: 'ECONNRESET' });
        await cut.catch((e: Error) => expect(e.message).not.toContain('2.25.1'));
      },
    );
  });

  it('given the SDK over it, then a point read is signed, throttling (429) is retried after the wait the service asks, and a 404 reads as absent', async () => {
    await withServer(
      (req, res, _body, n) => {
        const url = req.url ?? '';
        if (url === '/dbs/d/colls/c') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ id: 'c', _rid: 'r', _self: 'dbs/d/colls/c/', partitionKey: { paths: ['/pk'], kind: 'Hash', version: 2 } }));
        } else if (url === '/dbs/d/colls/c/docs/a' && n <= 2) {
          res.writeHead(429, { 'content-type': 'application/json', 'x-ms-retry-after-ms': '5', 'x-ms-substatus': '3200' });
          res.end(JSON.stringify({ code: 'TooManyRequests', message: 'throttled' }));
        } else if (url === '/dbs/d/colls/c/docs/a') {
          res.writeHead(200, { 'content-type': 'application/json', etag: '"e2"' });
          res.end(JSON.stringify({ id: 'a', pk: 'p', _etag: '"e2"' }));
        } else {
          res.writeHead(404, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ code: 'NotFound', message: 'absent' }));
        }
      },
      async (base, seen) => {
        const sdk = new CosmosClient({ endpoint: base, key: Buffer.from('a test key').toString('base64'), connectionPolicy: { enableEndpointDiscovery: false }, httpClient: client });
        const container = sdk.database('d').container('c');
        const { resource, etag } = await container.item('a', 'p').read<{ id: string }>();
        expect(resource?.id).toBe('a');
        expect(etag).toBe('"e2"');
        const reads = seen.filter((s) => s.url === '/dbs/d/colls/c/docs/a');
        expect(reads.length).toBeGreaterThanOrEqual(2);
        expect(reads.every((r) => /^type(%3D|=)master/i.test(String(r.headers.authorization)))).toBe(true);
        const missing = await container.item('b', 'p').read();
        expect(missing.statusCode).toBe(404);
        expect(missing.resource).toBeUndefined();
      },
    );
  });
});
