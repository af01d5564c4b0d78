import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/core-auth';
import { type Container, CosmosClient, type FeedOptions } from '@azure/cosmos';

import { CosmosIndexStore, CosmosResearchCatalog } from '../../../shared/catalog/cosmosCatalog';
import { CosmosDocumentClient, CosmosRequestError, SessionTokens } from '../../../shared/catalog/cosmosDocuments';
import { withServer } from './cosmosStandIn';

/** The local emulator's well-known account key (public; not a secret). */
const KEY = 'C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==';
const DOC_ID = 'instance:1.2.826.0.1.3680043.10.1.7';
const PK = '1.2.826.0.1.3680043.10.1.5';

function json(res: import('node:http').ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

describe('CosmosDocumentClient (point operations on catalog documents)', () => {
  it('given the same request and date, then it is signed and addressed as the Cosmos DB SDK signs and addresses it', async () => {
    await withServer(
      (req, res) => {
        // The SDK reads the container's partition key definition before its first create.
        if (req.url?.endsWith('/colls/research')) return json(res, 200, { id: 'research', partitionKey: { paths: ['/studyInstanceUid'], kind: 'Hash' } });
        json(res, req.method === 'POST' ? 201 : 200, { id: DOC_ID, _etag: '"e1"' }, { etag: '"e1"' });
      },
      async (base, seen) => {
        const sdk = new CosmosClient({ endpoint: base, key: KEY, connectionPolicy: { enableEndpointDiscovery: false } }).database('catalog').container('research');
        await sdk.items.create({ id: DOC_ID, studyInstanceUid: PK });
        await sdk.item(DOC_ID, PK).read();
        const bySdk = seen.splice(0).filter((r) => r.url.includes('/docs'));
        expect(bySdk.map((r) => r.method)).toEqual(['POST', 'GET']);

        for (const [i, op] of [
          (docs: ReturnType<CosmosDocumentClient['container']>) => docs.create({ id: DOC_ID, studyInstanceUid: PK }, PK),
          (docs: ReturnType<CosmosDocumentClient['container']>) => docs.read(DOC_ID, PK),
        ].entries()) {
          const date = new Date(String(bySdk[i]?.headers['x-ms-date']));
          const docs = new CosmosDocumentClient(base, { kind: 'key', key: KEY }, { now: () => date }).container('catalog', 'research');
          await op(docs);
          const ours = seen[i];
          expect(ours?.url).toBe(bySdk[i]?.url);
          expect(ours?.headers['x-ms-date']).toBe(bySdk[i]?.headers['x-ms-date']);
          expect(ours?.headers.authorization).toBe(bySdk[i]?.headers.authorization);
          expect(ours?.headers['x-ms-documentdb-partitionkey']).toBe(bySdk[i]?.headers['x-ms-documentdb-partitionkey']);
          expect(ours?.headers['x-ms-version']).toBe(bySdk[i]?.headers['x-ms-version']);
        }
        expect(seen[0]?.body).toBe(JSON.stringify({ id: DOC_ID, studyInstanceUid: PK }));
      },
    );
  });

  it('given answers with session tokens, then reads send the newest token of each range, writes none, and queries get them', async () => {
    const tokens = ['0:-1#12', '0:-1#10', '1:-1#5'];
    await withServer(
      (req, res, _body, n) => {
        if (req.method === 'GET') return json(res, 200, { id: 'a', _etag: '"e"' }, { etag: '"e"', 'x-ms-session-token': tokens[n - 1] ?? '' });
        return json(res, 201, { id: 'a', _etag: '"e"' }, { etag: '"e"', 'x-ms-session-token': tokens[n - 1] ?? '' });
      },
      async (base, seen) => {
        const docs = new CosmosDocumentClient(base, { kind: 'key', key: KEY }).container('catalog', 'index');
        expect(docs.sessionToken()).toBeUndefined();
        await docs.create({ id: 'a' }, 'a');
        await docs.read('a', 'a');
        await docs.create({ id: 'b' }, 'b');
        await docs.read('a', 'a');
        expect(seen[0]?.headers['x-ms-session-token']).toBeUndefined();
        expect(seen[1]?.headers['x-ms-session-token']).toBe('0:-1#12');
        expect(seen[2]?.headers['x-ms-session-token']).toBeUndefined();
        // The older token of range 0 did not replace the newer one; range 1 joined.
        expect(seen[3]?.headers['x-ms-session-token']).toBe('0:-1#12,1:-1#5');
        expect(docs.sessionToken()).toBe('0:-1#12,1:-1#5');

        // A query of the index store runs on the SDK with the tokens of this process's writes.
        const asked: FeedOptions[] = [];
        const container = { items: { query: (_q: unknown, options: FeedOptions) => (asked.push(options), { fetchAll: async () => ({ resources: [] }) }) } } as unknown as Container;
        await new CosmosIndexStore({ container, documents: docs }).findByResearchInstance('1.2.3');
        expect(asked).toEqual([{ sessionToken: '0:-1#12,1:-1#5' }]);
      },
    );
  });

  it('given a query within one partition, then it is signed as a create at the same date, carries the partition, the query flag and the session, and pages through the continuation', async () => {
    const date = new Date('2026-12-04T02:00:00Z');
    await withServer(
      (req, res, _body, n) => {
        if (n === 1) return json(res, 201, { id: 'a', _etag: '"e"' }, { etag: '"e"', 'x-ms-session-token': '0:-1#7' });
        if (n === 2) return json(res, 200, { Documents: [{ id: 'x1' }, { id: 'x2' }], _count: 2 }, { 'x-ms-continuation': '{"offset":2}' });
        json(res, 200, { Documents: [{ id: 'x3' }], _count: 1 });
      },
      async (base, seen) => {
        const docs = new CosmosDocumentClient(base, { kind: 'key', key: KEY }, { now: () => date }).container('catalog', 'research');
        await docs.create({ id: 'a', studyInstanceUid: PK }, PK);
        const spec = { query: 'SELECT c.id FROM c WHERE c.seriesInstanceUid = @s', parameters: [{ name: '@s', value: '1.2.3' }] };
        await expect(docs.query<{ id: string }>(spec, PK)).resolves.toEqual([{ id: 'x1' }, { id: 'x2' }, { id: 'x3' }]);
        const [create, first, second] = seen;
        for (const q of [first, second]) {
          expect(q?.method).toBe('POST');
          expect(q?.url).toBe(create?.url);
          // The same verb, resource type and link as a create: the SDK-checked signature above.
          expect(q?.headers.authorization).toBe(create?.headers.authorization);
          expect(q?.headers['x-ms-documentdb-isquery']).toBe('True');
          expect(q?.headers['content-type']).toBe('application/query+json');
          expect(q?.headers['x-ms-documentdb-partitionkey']).toBe(JSON.stringify([PK]));
          expect(q?.headers['x-ms-session-token']).toBe('0:-1#7');
          expect(JSON.parse(q?.body ?? '')).toEqual(spec);
        }
        expect(first?.headers['x-ms-continuation']).toBeUndefined();
        expect(second?.headers['x-ms-continuation']).toBe('{"offset":2}');
      },
    );
  });

  it('given a query answered 404/1002 and then 404, then it is sent again and then rejects with 404 (a query of a missing container is no empty result)', async () => {
    await withServer(
      (_req, res, _body, n) => json(res, 404, { code: 'NotFound' }, n === 1 ? { 'x-ms-substatus': '1002' } : {}),
      async (base, seen) => {
        const docs = new CosmosDocumentClient(base, { kind: 'key', key: KEY }).container('catalog', 'research');
        await expect(docs.query({ query: 'SELECT * FROM c' }, PK)).rejects.toMatchObject({ statusCode: 404, code: 404 });
        expect(seen).toHaveLength(2);
      },
    );
  });

  it('given a summary refresh, then its queries go over the documents client within the study partition, and the SDK (with its query plan) is not asked', async () => {
    const study = PK;
    const series = '1.2.826.0.1.3680043.10.1.6';
    const instance = { id: DOC_ID, type: 'instance', studyInstanceUid: study, seriesInstanceUid: series, sopInstanceUid: '1.2.826.0.1.3680043.10.1.7', sopClassUid: '1.2.840.10008.5.1.4.1.1.2', modality: 'CT', updatedAt: '2026-12-04T02:00:00.000Z', dicom: { '00080060': { vr: 'CS', Value: ['CT'] } } };
    const seriesDoc = { id: `series:${series}`, type: 'series', studyInstanceUid: study, seriesInstanceUid: series, modality: 'CT', numberOfSeriesRelatedInstances: 1, sopClassesInSeries: [instance.sopClassUid], dicom: {}, updatedAt: '2026-12-04T02:00:00.000Z' };
    await withServer(
      (req, res, body) => {
        if (req.method === 'GET') return req.url?.endsWith(encodeURI(DOC_ID)) ? json(res, 200, { ...instance, _etag: '"i"' }) : json(res, 404, { code: 'NotFound' });
        if (req.headers['x-ms-documentdb-isquery']) return json(res, 200, { Documents: body.includes("'series'") ? [seriesDoc] : [instance], _count: 1 });
        json(res, 201, { _etag: '"w"' }, { etag: '"w"' });
      },
      async (base, seen) => {
        const docs = new CosmosDocumentClient(base, { kind: 'key', key: KEY }).container('catalog', 'research');
        const container = { items: { query: () => { throw new Error('the SDK was asked for a query within one partition'); } } } as unknown as Container;
        await new CosmosResearchCatalog({ container, documents: docs }).refreshSummaries(study, series);
        const queries = seen.filter((r) => r.headers['x-ms-documentdb-isquery'] === 'True');
        expect(queries).toHaveLength(2);
        for (const q of queries) {
          expect(q.headers['x-ms-documentdb-partitionkey']).toBe(JSON.stringify([study]));
          expect(JSON.parse(q.body)).toMatchObject({ parameters: expect.arrayContaining([{ name: '@pk', value: study }]) });
        }
        expect(seen.some((r) => r.headers['x-ms-cosmos-is-query-plan-request'] !== undefined)).toBe(false);
        // The two summaries were written: a series and a study document.
        const created = seen.filter((r) => r.method === 'POST' && !r.headers['x-ms-documentdb-isquery']).map((r) => (JSON.parse(r.body) as { type: string }).type);
        expect(created.sort()).toEqual(['series', 'study']);
      },
    );
  });

  it('given tokens of a newer version or malformed ones, then a newer version replaces the range\'s token and the malformed are ignored', () => {
    const t = new SessionTokens();
    t.merge('0:1#50#3=50');
    t.merge('0:2#7');
    t.merge('garbage,:1#2,2:x#y');
    t.merge('0:1#60');
    expect(t.toString()).toBe('0:2#7');
  });

  it('given a throttled create, then it is sent again after the service\'s retry-after and succeeds', async () => {
    await withServer(
      (_req, res, _body, n) => (n === 1 ? json(res, 429, { code: 'TooManyRequests' }, { 'x-ms-retry-after-ms': '20' }) : json(res, 201, { id: 'a' }, { etag: '"e2"' })),
      async (base, seen) => {
        const docs = new CosmosDocumentClient(base, { kind: 'key', key: KEY }).container('catalog', 'index');
        const started = Date.now();
        await expect(docs.create({ id: 'a' }, 'a')).resolves.toEqual({ etag: '"e2"' });
        expect(Date.now() - started).toBeGreaterThanOrEqual(15);
        expect(seen).toHaveLength(2);
      },
    );
  });

  it('given a read of an absent document, then it resolves undefined; given 404/1002 (the session not yet readable), then it is read again, never reported absent, and at last read without the refused tokens', async () => {
    await withServer(
      (req, res, _body, n) => {
        if (req.url?.endsWith('/absent')) return json(res, 404, { code: 'NotFound' });
        if (req.url?.endsWith('/late') && n <= 3) return json(res, 404, { code: 'NotFound' }, { 'x-ms-substatus': '1002' });
        if (req.url?.endsWith('/never')) return json(res, 404, { code: 'NotFound' }, { 'x-ms-substatus': '1002' });
        return json(res, 200, { id: 'late', _etag: '"e3"', status: 'cataloged' }, { 'x-ms-session-token': '0:-1#40' });
      },
      async (base, seen) => {
        const docs = new CosmosDocumentClient(base, { kind: 'key', key: KEY }).container('catalog', 'index');
        await expect(docs.read('absent', 'absent')).resolves.toBeUndefined();
        await expect(docs.read<{ status: string }>('late', 'late')).resolves.toMatchObject({ etag: '"e3"', resource: { status: 'cataloged' } });
        expect(seen.filter((r) => r.url.endsWith('/late'))).toHaveLength(3);
        const failure = await docs.read('never', 'never').then(() => undefined, (e: unknown) => e);
        expect(failure).toBeInstanceOf(CosmosRequestError);
        expect(failure).toMatchObject({ statusCode: 503, code: 503, substatus: 1002 });
        expect(String((failure as Error).message)).not.toContain('never');
        expect(seen.filter((r) => r.url.endsWith('/never')).every((r) => r.headers['x-ms-session-token'] === '0:-1#40')).toBe(true);
        // The refused tokens are dropped: the next read goes without them.
        await docs.read('late', 'late');
        expect(seen.at(-1)?.headers['x-ms-session-token']).toBeUndefined();
      },
    );
  });

  it('given a connection reset, then a read is sent again and a create is not (its error carries the socket code and no id)', async () => {
    await withServer(
      (req, res, _body, n) => {
        if (n === 1 || req.method === 'POST') return req.socket.destroy();
        json(res, 200, { id: 'x', _etag: '"e4"' });
      },
      async (base, seen) => {
        const docs = new CosmosDocumentClient(base, { kind: 'key', key: KEY }).container('catalog', 'research');
        await expect(docs.read('x', 'x')).resolves.toMatchObject({ etag: '"e4"' });
        expect(seen).toHaveLength(2);
        const failure = await docs.create({ id: DOC_ID }, PK).then(() => undefined, (e: unknown) => e);
        expect(failure).toMatchObject({ name: 'CosmosRequestError', code: 'ECONNRESET' });
        expect((failure as CosmosRequestError).statusCode).toBeUndefined();
        expect(String((failure as Error).message)).not.toContain(DOC_ID);
        expect(seen.filter((r) => r.method === 'POST')).toHaveLength(1);
      },
    );
  });

  it('given a conflict, a failed precondition and a gone document, then each rejects with its status as the catalog reads it, naming no document', async () => {
    await withServer(
      (req, res) => {
        if (req.method === 'POST') return json(res, 409, { code: 'Conflict', message: `Entity with id ${DOC_ID} exists` });
        if (req.method === 'PUT') return json(res, 412, { code: 'PreconditionFailed' });
        return json(res, 404, { code: 'NotFound' });
      },
      async (base, seen) => {
        const docs = new CosmosDocumentClient(base, { kind: 'key', key: KEY }).container('catalog', 'research');
        for (const [op, status] of [[() => docs.create({ id: DOC_ID }, PK), 409], [() => docs.replace({ id: DOC_ID }, PK, '"old"'), 412], [() => docs.delete(DOC_ID, PK, '"old"'), 404]] as const) {
          const failure = await op().then(() => undefined, (e: unknown) => e);
          expect(failure).toMatchObject({ code: status, statusCode: status });
          expect(String((failure as Error).message)).not.toContain(DOC_ID);
          expect(String((failure as Error).message)).not.toContain(PK);
        }
        expect(seen.map((r) => [r.method, r.headers['if-match']])).toEqual([['POST', undefined], ['PUT', '"old"'], ['DELETE', '"old"']]);
      },
    );
  });

  it('given creates that overlap, then those behind the one out leave as one bulk request signed, addressed and shaped as the SDK\'s bulk, and each resolves with its own ETag or 409', async () => {
    const ranges = { _rid: 'r', PartitionKeyRanges: [{ id: '0', minInclusive: '', maxExclusive: 'FF' }], _count: 1 };
    const answerBatch = (body: string) => (JSON.parse(body) as { resourceBody: { id: string } }[]).map((op) =>
      op.resourceBody.id === 'taken' ? { statusCode: 409, requestCharge: 0 } : { statusCode: 201, requestCharge: 6, eTag: `"e-${op.resourceBody.id}"`, resourceBody: { ...op.resourceBody, _etag: `"e-${op.resourceBody.id}"` } });
    await withServer(
      (req, res, body) => {
        if (req.url?.endsWith('/colls/research')) return json(res, 200, { id: 'research', partitionKey: { paths: ['/studyInstanceUid'], kind: 'Hash', version: 2 } });
        if (req.url?.endsWith('/pkranges')) return json(res, 200, ranges);
        if (req.headers['x-ms-cosmos-is-batch-request'] === 'true') return json(res, 200, answerBatch(body), { 'x-ms-session-token': '0:-1#30' });
        const doc = JSON.parse(body) as { id: string };
        json(res, 201, { ...doc, _etag: `"e-${doc.id}"` }, { etag: `"e-${doc.id}"`, 'x-ms-session-token': '0:-1#20' });
      },
      async (base, seen) => {
        const sdk = new CosmosClient({ endpoint: base, key: KEY, connectionPolicy: { enableEndpointDiscovery: false } }).database('catalog').container('research');
        await sdk.items.executeBulkOperations([
          { operationType: 'Create', partitionKey: PK, resourceBody: { id: 'b1', studyInstanceUid: PK } },
          { operationType: 'Create', partitionKey: PK, resourceBody: { id: 'b2', studyInstanceUid: PK } },
        ]);
        const sdkRequests = seen.splice(0);
        const bySdk = sdkRequests.find((r) => r.headers['x-ms-cosmos-is-batch-request'] !== undefined);
        expect(bySdk).toBeDefined();
        const sdkRanges = sdkRequests.find((r) => r.url.includes('/pkranges'));

        const date = new Date(String(bySdk?.headers['x-ms-date']));
        const docs = new CosmosDocumentClient(base, { kind: 'key', key: KEY }, { now: () => date }).container('catalog', 'research');
        // The first overlap sends both alone and reads the ranges; from then on, creates behind the one out wait.
        await Promise.all([docs.create({ id: 'a1', studyInstanceUid: PK }, PK), docs.create({ id: 'a2', studyInstanceUid: PK }, PK)]);
        expect(seen.map((r) => `${r.method} ${r.url}`).sort()).toEqual(['GET /dbs/catalog/colls/research/pkranges', 'POST /dbs/catalog/colls/research/docs', 'POST /dbs/catalog/colls/research/docs']);
        const pkranges = seen.find((r) => r.method === 'GET');
        expect(pkranges?.url).toBe(sdkRanges?.url.split('?')[0]);
        expect(pkranges?.headers.authorization).toMatch(/^type%3Dmaster%26ver%3D1\.0%26sig%3D/);
        seen.splice(0);
        const results = await Promise.allSettled([
          docs.create({ id: 'a3', studyInstanceUid: PK }, PK),
          docs.create({ id: 'b1', studyInstanceUid: PK }, PK),
          docs.create({ id: 'taken', studyInstanceUid: PK }, PK),
          docs.create({ id: 'b2', studyInstanceUid: PK }, PK),
        ]);
        expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as CosmosRequestError).statusCode))).toEqual([{ etag: '"e-a3"' }, { etag: '"e-b1"' }, 409, { etag: '"e-b2"' }]);
        expect(seen.map((r) => r.headers['x-ms-cosmos-is-batch-request'] ?? 'alone')).toEqual(['alone', 'true']);
        const ours = seen[1];
        expect(ours?.url).toBe(bySdk?.url);
        for (const h of ['authorization', 'x-ms-date', 'x-ms-version', 'x-ms-cosmos-batch-atomic', 'x-ms-cosmos-batch-continue-on-error', 'x-ms-documentdb-partitionkeyrangeid', 'x-ms-documentdb-partitionkey', 'content-type']) expect([h, ours?.headers[h]]).toEqual([h, bySdk?.headers[h]]);
        expect(ours?.headers['x-ms-documentdb-partitionkey']).toBeUndefined();
        // The SDK's operations and ours: the same fields, ours with the third document between.
        const sdkOps = JSON.parse(bySdk?.body ?? '[]') as Record<string, unknown>[];
        const ourOps = JSON.parse(ours?.body ?? '[]') as Record<string, unknown>[];
        expect([ourOps[0], ourOps[2]]).toEqual(sdkOps);
        // The bulk answer's session token is kept for the reads that follow.
        expect(docs.sessionToken()).toBe('0:-1#30');
      },
    );
  });

  it('given reads that overlap, then those behind the one out leave as one bulk request with the session\'s tokens, shaped as the SDK\'s reads; absent is undefined and 404/1002 is read again alone', async () => {
    const ranges = { PartitionKeyRanges: [{ id: '0', minInclusive: '', maxExclusive: 'FF' }] };
    await withServer(
      (req, res, body) => {
        if (req.url?.endsWith('/colls/index')) return json(res, 200, { id: 'index', partitionKey: { paths: ['/id'], kind: 'Hash', version: 2 } });
        if (req.url?.endsWith('/pkranges')) return json(res, 200, ranges);
        if (req.headers['x-ms-cosmos-is-batch-request'] === 'true') {
          const ops = JSON.parse(body) as { id: string }[];
          return json(res, 200, ops.map((op) => (op.id === 'absent' ? { statusCode: 404, requestCharge: 1 } : op.id === 'late' ? { statusCode: 404, subStatusCode: 1002, requestCharge: 1 } : { statusCode: 200, requestCharge: 1, eTag: `"e-${op.id}"`, resourceBody: { id: op.id, status: 'cataloged', _etag: `"e-${op.id}"` } })));
        }
        if (req.method === 'GET') {
          const id = req.url?.split('/').pop() ?? '';
          return json(res, 200, { id, status: 'alone', _etag: `"e-${id}"` }, { 'x-ms-session-token': '0:-1#9' });
        }
        json(res, 201, JSON.parse(body), { etag: '"c"', 'x-ms-session-token': '0:-1#9' });
      },
      async (base, seen) => {
        const sdk = new CosmosClient({ endpoint: base, key: KEY, connectionPolicy: { enableEndpointDiscovery: false } }).database('catalog').container('index');
        await sdk.items.executeBulkOperations([{ operationType: 'Read', id: 'x1', partitionKey: 'x1' }]);
        const bySdk = seen.splice(0).find((r) => r.headers['x-ms-cosmos-is-batch-request'] !== undefined);

        const docs = new CosmosDocumentClient(base, { kind: 'key', key: KEY }).container('catalog', 'index');
        await Promise.all([docs.create({ id: 'w1' }, 'w1'), docs.create({ id: 'w2' }, 'w2')]);
        await docs.lane.checked();
        seen.splice(0);
        const results = await Promise.all([docs.read('a1', 'a1'), docs.read<{ status: string }>('x1', 'x1'), docs.read('absent', 'absent'), docs.read<{ status: string }>('late', 'late')]);
        expect(results).toEqual([
          { resource: { id: 'a1', status: 'alone', _etag: '"e-a1"' }, etag: '"e-a1"' },
          { resource: { id: 'x1', status: 'cataloged', _etag: '"e-x1"' }, etag: '"e-x1"' },
          undefined,
          // Not yet readable at the replica the bulk request met: read again alone.
          { resource: { id: 'late', status: 'alone', _etag: '"e-late"' }, etag: '"e-late"' },
        ]);
        expect(seen.map((r) => `${r.method} ${r.headers['x-ms-cosmos-is-batch-request'] ?? r.url.split('/').pop()}`)).toEqual(['GET a1', 'POST true', 'GET late']);
        const ours = seen[1];
        expect(ours?.headers['x-ms-session-token']).toBe('0:-1#9');
        expect((JSON.parse(ours?.body ?? '[]') as unknown[])[0]).toEqual((JSON.parse(bySdk?.body ?? '[]') as unknown[])[0]);
      },
    );
  });

  it('given a bulk request whose connection is reset, then each of its creates fails with the socket code, naming no document, and is not sent again', async () => {
    await withServer(
      (req, res, body) => {
        if (req.url?.endsWith('/pkranges')) return json(res, 200, { PartitionKeyRanges: [{ id: '0' }] });
        if (req.headers['x-ms-cosmos-is-batch-request']) return req.socket.destroy();
        const doc = JSON.parse(body) as { id: string };
        setTimeout(() => json(res, 201, doc, { etag: `"e-${doc.id}"` }), 20);
      },
      async (base, seen) => {
        const docs = new CosmosDocumentClient(base, { kind: 'key', key: KEY }).container('catalog', 'research');
        await Promise.all([docs.create({ id: 'a1' }, 'p'), docs.create({ id: 'a2' }, 'p')]);
        const results = await Promise.allSettled([docs.create({ id: 'a3' }, 'p'), docs.create({ id: DOC_ID }, 'p'), docs.create({ id: 'a5' }, 'p')]);
        expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected']);
        for (const r of results.slice(1)) {
          expect((r as PromiseRejectedResult).reason).toMatchObject({ name: 'CosmosRequestError', code: 'ECONNRESET' });
          expect(String(((r as PromiseRejectedResult).reason as Error).message)).not.toContain(DOC_ID);
        }
        expect(seen.filter((r) => r.headers['x-ms-cosmos-is-batch-request'])).toHaveLength(1);
        expect(seen.filter((r) => r.method === 'POST')).toHaveLength(4);
      },
    );
  });

  it('given requestsInFlight 0, then overlapping creates all go alone and the ranges are not read', async () => {
    await withServer(
      (_req, res, body) => {
        const doc = JSON.parse(body) as { id: string };
        setTimeout(() => json(res, 201, doc, { etag: `"e-${doc.id}"` }), 10);
      },
      async (base, seen) => {
        const docs = new CosmosDocumentClient(base, { kind: 'key', key: KEY }, { requestsInFlight: 0 }).container('catalog', 'research');
        await Promise.all(Array.from({ length: 6 }, (_, i) => docs.create({ id: `d${i}` }, 'p')));
        expect(seen.map((r) => `${r.method} ${r.headers['x-ms-cosmos-is-batch-request'] ?? 'alone'}`)).toEqual(Array(6).fill('POST alone'));
      },
    );
  });

  it('given an id a path cannot carry, then nothing is sent', async () => {
    await withServer(
      (_req, res) => json(res, 200, {}),
      async (base, seen) => {
        const docs = new CosmosDocumentClient(base, { kind: 'key', key: KEY }).container('catalog', 'research');
        await expect(docs.read('a/b', 'p')).rejects.toMatchObject({ statusCode: 400 });
        await expect(docs.create({ id: 'a?b' }, 'p')).rejects.toMatchObject({ statusCode: 400 });
        expect(seen).toHaveLength(0);
      },
    );
  });

  it('given an Entra ID credential, then the account\'s scope is asked first, the service scope when the account\'s is refused, and the token is cached', async () => {
    const scopes: string[] = [];
    const credential: TokenCredential = {
      getToken: async (scope: string | string[], _options?: GetTokenOptions): Promise<AccessToken> => {
        const s = String(scope);
        scopes.push(s);
        if (!s.startsWith('https://cosmos.azure.com')) throw new Error('AADSTS500011: resource principal not found');
        return { token: 'tok-1', expiresOnTimestamp: Date.now() + 3_600_000 };
      },
    };
    await withServer(
      (_req, res) => json(res, 200, { id: 'a', _etag: '"e"' }),
      async (base, seen) => {
        const docs = new CosmosDocumentClient(base, { kind: 'token', credential }).container('catalog', 'index');
        await docs.read('a', 'a');
        await docs.read('a', 'a');
        expect(scopes).toEqual([`${new URL(base).origin}/.default`, 'https://cosmos.azure.com/.default']);
        expect(seen.map((r) => r.headers.authorization)).toEqual(['type=aad&ver=1.0&sig=tok-1', 'type=aad&ver=1.0&sig=tok-1']);
      },
    );
  });

  it('given a credential that gives no token, then its own error goes up and nothing is sent', async () => {
    const refused = Object.assign(new Error('ManagedIdentityCredential: no managed identity endpoint'), { name: 'CredentialUnavailableError' });
    const credential: TokenCredential = { getToken: async () => Promise.reject(refused) };
    await withServer(
      (_req, res) => json(res, 200, { id: 'a', _etag: '"e"' }),
      async (base, seen) => {
        const docs = new CosmosDocumentClient(base, { kind: 'token', credential }).container('catalog', 'index');
        await expect(docs.read('a', 'a')).rejects.toBe(refused);
        expect(seen).toHaveLength(0);
      },
    );
  });
});
