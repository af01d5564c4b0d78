/**
 * What the storage SDK itself costs per request (issue 12's host CPU per instance): the two blob
 * requests every ingestion makes, GetBlob of a 512 KB source and PutBlob of its research copy,
 * sent by the SDK client the host builds (blobServiceClient) and by plain node:http with a SAS
 * URL, against the same Azurite, in this process, in turn. Also sent:
 *
 * - GetBlob and PutBlob with BlobHttp (shared/storage/blobHttp.ts), which the stores read and
 *   write small copies with since 0.11.0: Shared Key signed, as the host's client is locally;
 * - GetBlobProperties with the SDK: a request with no body, so the SDK's own work per request;
 * - both blob requests through an SDK client whose pipeline keeps only serialization,
 *   deserialization, the error details, retry and signing: the policies that do nothing here or
 *   in Azure (tracing without a tracer, logging without a log level, redirects, proxies, form
 *   data, the browser policy, the user agent and client request id headers) removed.
 *
 * The CPU (user and system) of this process per request is the figure, over `rounds` rounds of
 * `requests` requests 16 at a time; the first round warms up and is not counted, the median of
 * the rest is printed. GetBlob's figures move with the garbage collector's timing (the 512 KB
 * bodies are collected in lumps), PutBlob's and GetBlobProperties' hardly. Usage: npm run build && node dist/bench/blobClientCost.js [requests, default 600] [rounds, default 7]
 */
import * as http from 'node:http';

import { BlobServiceClient, ContainerClient, ContainerSASPermissions } from '@azure/storage-blob';

import { azuriteConnectionString } from '../local/emulators';
import { startAzurite } from '../local/services/azurite';
import { blobEndpointOf } from '../shared/config/settings';
import { BlobHttp } from '../shared/storage/blobHttp';
import { blobServiceClient } from '../shared/storage/blobStores';
import { formatTable, percentile, round } from './stats';

const CONCURRENCY = 16;
const SOURCES = 64;
const SLICE_BYTES = 512 * 1024;
/** The policies the trimmed client drops (names as @azure/core-rest-pipeline and the storage SDK give them). */
const IDLE_POLICIES = [
  'tracingPolicy',
  'logPolicy',
  'redirectPolicy',
  'proxyPolicy',
  'formDataPolicy',
  'multipartPolicy',
  'wrapAbortSignalLikePolicy',
  'storageBrowserPolicy',
  'userAgentPolicy',
  'setClientRequestIdPolicy',
  'StorageCorrectContentLengthPolicy',
];

interface PolicyPipeline {
  removePolicy(options: { name: string }): unknown;
  getOrderedPolicies(): { name: string }[];
}

/**
 * Removes the idle policies from the pipeline every client of `service` shares. The SDK builds
 * that pipeline once per service client and gives it no public handle: a bench probe, not a
 * setting of the pipeline (the measurement below found nothing to gain from it).
 */
function trim(service: BlobServiceClient): string[] {
  const probe = service.getContainerClient('probe').getBlobClient('probe') as unknown as { storageClientContext: { pipeline: PolicyPipeline } };
  const pipeline = probe.storageClientContext.pipeline;
  for (const name of IDLE_POLICIES) pipeline.removePolicy({ name });
  return pipeline.getOrderedPolicies().map((p) => p.name);
}

async function cpuPerRequest(requests: number, send: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const before = process.cpuUsage();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    for (let i = next++; i < requests; i = next++) await send(i);
  }));
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000 / requests;
}

async function consume(body: AsyncIterable<Uint8Array> | undefined): Promise<number> {
  let n = 0;
  for await (const chunk of body ?? []) n += chunk.length;
  return n;
}

async function main(): Promise<void> {
  const requests = Number(process.argv[2] ?? 600);
  const rounds = Number(process.argv[3] ?? 7);
  if (!Number.isInteger(requests) || requests < 16 || !Number.isInteger(rounds) || rounds < 2) throw new Error('usage: blobClientCost.js [requests >= 16] [rounds >= 2]');
  const azurite = await startAzurite({ blobPort: 0, queuePort: 0 });
  try {
    const connectionString = azuriteConnectionString(azurite.blobPort, azurite.queuePort);
    const connection = { kind: 'connectionString' as const, connectionString, blobEndpoint: blobEndpointOf(connectionString) ?? '' };
    const sdk = blobServiceClient(connection).getContainerClient('blob-client-cost');
    await sdk.createIfNotExists();
    const blobHttp = BlobHttp.of(blobServiceClient(connection));
    const trimmedService = blobServiceClient(connection);
    const kept = trim(trimmedService);
    const trimmed = trimmedService.getContainerClient('blob-client-cost');
    const slice = Buffer.alloc(SLICE_BYTES, 0x5a);
    for (let i = 0; i < SOURCES; i++) await sdk.getBlockBlobClient(`source-${i}`).uploadData(slice);
    const sas = new URL(await sdk.generateSasUrl({ permissions: ContainerSASPermissions.parse('rcw'), expiresOn: new Date(Date.now() + 3_600_000) }));
    // A fresh agent each round: Azurite closes connections idle for 5 s, and the other kinds take longer.
    let agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    const plainUrl = (name: string) => `${sas.origin}${sas.pathname}/${name}${sas.search}`;
    const check = (n: number) => {
      if (n !== SLICE_BYTES) throw new Error(`read ${n} bytes, expected ${SLICE_BYTES}`);
    };

    let written = 0;
    const sdkGet = (client: ContainerClient) => async (i: number) => check(await consume((await client.getBlobClient(`source-${i % SOURCES}`).download(0)).readableStreamBody as AsyncIterable<Uint8Array> | undefined));
    const sdkPut = (client: ContainerClient) => async () => {
      await client.getBlockBlobClient(`copy-${written++}`).uploadData(slice, { conditions: { ifNoneMatch: '*' }, blobHTTPHeaders: { blobContentType: 'application/dicom' } });
    };
    const plain = (method: 'GET' | 'PUT', name: string) =>
      new Promise<void>((resolve, reject) => {
        const headers: http.OutgoingHttpHeaders = method === 'PUT' ? { 'x-ms-blob-type': 'BlockBlob', 'if-none-match': '*', 'content-type': 'application/dicom', 'content-length': SLICE_BYTES } : {};
        const req = http.request(plainUrl(name), { method, agent, headers: { 'x-ms-version': '2025-11-05', ...headers } }, (res) => {
          consume(res).then((n) => {
            if ((res.statusCode ?? 0) >= 300) return reject(new Error(`${method} answered ${res.statusCode}`));
            if (method === 'GET') check(n);
            resolve();
          }, reject);
        });
        req.once('error', reject);
        req.end(method === 'PUT' ? slice : undefined);
      });
    const kinds: [string, (i: number) => Promise<void>][] = [
      ['GetBlob, SDK', sdkGet(sdk)],
      ['GetBlob, SDK trimmed', sdkGet(trimmed)],
      ['GetBlob, node:http', (i) => plain('GET', `source-${i % SOURCES}`)],
      ['GetBlob, BlobHttp (Shared Key, as the stores read)', async (i) => check(await consume((await blobHttp.get('blob-client-cost', `source-${i % SOURCES}`)).body))],
      ['PutBlob, SDK', sdkPut(sdk)],
      ['PutBlob, SDK trimmed', sdkPut(trimmed)],
      ['PutBlob, node:http', () => plain('PUT', `copy-${written++}`)],
      ['PutBlob, BlobHttp (Shared Key, as the research store writes)', async () => void (await blobHttp.put('blob-client-cost', `copy-${written++}`, [slice], SLICE_BYTES, { contentType: 'application/dicom', ifNoneMatch: '*' }))],
      ['GetBlobProperties, SDK', async (i) => void (await sdk.getBlobClient(`source-${i % SOURCES}`).getProperties())],
    ];
    const samples = new Map<string, number[]>(kinds.map(([k]) => [k, []]));
    for (let r = 0; r < rounds; r++) {
      agent.destroy();
      agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
      for (const [kind, send] of kinds) {
        const from = written;
        const ms = await cpuPerRequest(requests, send);
        if (r > 0) samples.get(kind)?.push(ms);
        // Azurite keeps the blobs in memory: the copies go again before the next kind writes more.
        for (let n = from; n < written; n++) await sdk.getBlobClient(`copy-${n}`).delete();
      }
    }
    agent.destroy();
    const rows = kinds.map(([kind]) => {
      const s = (samples.get(kind) ?? []).sort((a, b) => a - b);
      return [kind, round(percentile(s, 50), 3).toFixed(3), `${round(s[0] ?? 0, 3).toFixed(3)}-${round(s[s.length - 1] ?? 0, 3).toFixed(3)}`];
    });
    process.stdout.write(`trimmed pipeline keeps: ${kept.join(', ')}\n`);
    process.stdout.write(`${formatTable([['request (512 KB)', 'CPU ms per request, median', 'range'], ...rows])}\n`);
    process.stdout.write(`${requests} requests per round, ${rounds - 1} rounds counted, ${CONCURRENCY} at a time\n`);
  } finally {
    await azurite.stop();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
