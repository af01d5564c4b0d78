/**
 * The request floor of the stack scenario, in a process of its own: the storage and catalog
 * requests one ingestion makes, sent with the same clients the function host builds
 * (blobServiceClient, createCosmosClient; Get Blob and Put Blob through BlobHttp, as the stores
 * send them since 0.11.0) and nothing else: no parsing, no de-identification,
 * no hashing, no function host. Its CPU per instance is what those requests cost a Node.js
 * process on this machine, whatever the pipeline does around them: the part of the host's
 * CPU per instance that no change to the pipeline can remove, short of sending fewer requests.
 *
 * The mix is the one the host was measured sending in the same run (requests per instance
 * by kind), on the same Azurite and Cosmos DB server, 16 instances at a time as the host
 * ingests them. Usage: node dist/bench/requestFloor.js <job.json>; prints one `FLOOR <json>` line.
 */
import * as fs from 'node:fs';

import { createCosmosClient, withCatalogRecovery } from '../shared/catalog/cosmosCatalog';
import type { CosmosConnection, StorageConnection } from '../shared/config/settings';
import { BlobHttp } from '../shared/storage/blobHttp';
import { blobServiceClient } from '../shared/storage/blobStores';

export interface FloorJob {
  storage: StorageConnection;
  cosmos: CosmosConnection;
  database: string;
  /** Landing container and the names of the source blobs to read (the burst's files). */
  container: string;
  blobs: string[];
  /** Requests per instance by kind, as the request counter names them (GetBlob, PutBlob, create, query...). */
  mix: Record<string, number>;
  /** A research instance document and an index document of the burst: the bodies to write. */
  instanceDoc: Record<string, unknown>;
  indexDoc: Record<string, unknown>;
  /** Instances sent first and not measured (the clients' connections and code warm up). */
  warmUp: number;
}

export interface FloorReport {
  instances: number;
  /** This process's CPU (user and system) per measured instance, ms. */
  cpuMsPerInstance: number;
  /** Requests sent per measured instance by kind. */
  sent: Record<string, number>;
  seconds: number;
  /** Each kind sent alone (KIND_SAMPLE times, as many at once as the mix): this process's CPU per request, ms. */
  cpuMsPerRequest: Record<string, number>;
}

export const FLOOR_PREFIX = 'FLOOR ';
const CONCURRENCY = 16;
/** Requests of each kind sent alone after the mix, for its CPU per request. */
const KIND_SAMPLE = 300;
/** Instances per series, as in the burst (250 slices per series). */
const SERIES_SIZE = 250;

/** True when the `i`-th instance sends a request of a kind sent `rate` times per instance (spread evenly). */
function due(i: number, rate: number, copy: number): boolean {
  return Math.floor((i + 1) * rate) - Math.floor(i * rate) > copy;
}

async function main(): Promise<void> {
  const job = JSON.parse(fs.readFileSync(process.argv[2] ?? '', 'utf8')) as FloorJob;
  const blobs = blobServiceClient(job.storage);
  const blobHttp = BlobHttp.of(blobs);
  const landing = blobs.getContainerClient(job.container);
  const copies = blobs.getContainerClient('request-floor');
  await copies.createIfNotExists();
  const database = createCosmosClient(job.cosmos).database(job.database);
  const { container: catalog } = await database.containers.createIfNotExists({ id: 'request-floor', partitionKey: { paths: ['/studyInstanceUid'] } });
  const rate = (kind: string) => job.mix[kind] ?? 0;
  const sent: Record<string, number> = {};
  const count = (kind: string) => (sent[kind] = (sent[kind] ?? 0) + 1);
  const summaries = new Map<string, string>();

  // The last source read: what PutBlob writes.
  let source: Buffer = Buffer.alloc(0);
  const studyOf = (i: number) => `floor.${Math.floor(i / (SERIES_SIZE * 4))}`;
  const seriesOf = (i: number) => `floor.${Math.floor(i / SERIES_SIZE)}`;
  /** One request of each kind, for the `i`-th instance (`k`: its copy when a kind is sent more than once per instance). */
  const send: Record<string, (i: number, k: number) => Promise<unknown>> = {
    GetBlob: (i) =>
      blobHttp.get(job.container, job.blobs[i % job.blobs.length] ?? '').then(async (r) => {
        const chunks: Buffer[] = [];
        for await (const chunk of r.body) chunks.push(chunk);
        source = Buffer.concat(chunks);
      }),
    pointRead: (i, k) => catalog.item(`absent-${i}-${k}`, studyOf(i)).read().catch(() => undefined),
    GetBlobProperties: (i) => landing.getBlobClient(job.blobs[i % job.blobs.length] ?? '').getProperties(),
    PutBlob: (i, k) => blobHttp.put('request-floor', `${i}-${k}.dcm`, [source], source.length, { contentType: 'application/dicom', ifNoneMatch: '*' }),
    create: (i, k) => {
      const body = k % 2 === 0 ? job.instanceDoc : job.indexDoc;
      return withCatalogRecovery(catalog, () => catalog.items.create({ ...body, id: `doc-${i}-${k}`, studyInstanceUid: studyOf(i), seriesInstanceUid: seriesOf(i), type: 'instance' }));
    },
    query: (i) =>
      catalog.items
        .query({ query: "SELECT c.id, c.sopClassUid, c.updatedAt FROM c WHERE c.type = 'instance' AND c.seriesInstanceUid = @s AND c.studyInstanceUid = @pk", parameters: [{ name: '@s', value: seriesOf(i) }, { name: '@pk', value: studyOf(i) }] }, { partitionKey: studyOf(i) })
        .fetchAll(),
    replace: async (i) => {
      const study = studyOf(i);
      const id = `summary-${seriesOf(i)}`;
      const etag = summaries.get(id);
      const doc = { ...job.instanceDoc, id, studyInstanceUid: study, type: 'series', updatedAt: new Date().toISOString() };
      const r = etag
        ? await catalog.item(id, study).replace(doc, { accessCondition: { type: 'IfMatch', condition: etag } }).catch(() => catalog.item(id, study).replace(doc))
        : await catalog.items.upsert(doc);
      summaries.set(id, r.etag ?? '');
    },
  };
  const sendAll = async (kind: string, i: number, alongside: Promise<unknown>[] | undefined) => {
    for (let k = 0; due(i, rate(kind), k); k++) {
      count(kind);
      const request = (send[kind] as (i: number, k: number) => Promise<unknown>)(i, k);
      if (alongside) alongside.push(request);
      else await request;
    }
  };

  const one = async (i: number): Promise<void> => {
    // The source read (to the end) and the index read, at once, as the host does; then the rest in turn.
    const reads: Promise<unknown>[] = [];
    await sendAll('GetBlob', i, reads);
    await sendAll('pointRead', i, reads);
    await Promise.all(reads);
    for (const kind of ['GetBlobProperties', 'PutBlob', 'create', 'query', 'replace']) await sendAll(kind, i, undefined);
  };

  const run = async (from: number, to: number) => {
    let next = from;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < to; i = next++) await one(i);
    }));
  };
  const instances = job.blobs.length;
  await run(0, Math.min(job.warmUp, instances));
  for (const k of Object.keys(sent)) delete sent[k];
  const measured = Math.max(0, instances - job.warmUp);
  const started = Date.now();
  const cpu = process.cpuUsage();
  await run(job.warmUp, instances);
  const used = process.cpuUsage(cpu);
  // Then each kind alone, the same number of times at the same concurrency: its CPU per request.
  const cpuMsPerRequest: Record<string, number> = {};
  const alone = Math.min(measured, KIND_SAMPLE);
  for (const kind of Object.keys(send).filter((k) => rate(k) > 0)) {
    let next = 0;
    const before = process.cpuUsage();
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      // Queries and replaces go to the burst's series (their rows are there); the rest to names of their own.
      for (let n = next++; n < alone; n = next++) await (send[kind] as (i: number, k: number) => Promise<unknown>)(kind === 'query' || kind === 'replace' ? n : instances + n, n % 2);
    }));
    const spent = process.cpuUsage(before);
    cpuMsPerRequest[kind] = alone ? Math.round(((spent.user + spent.system) / 1000 / alone) * 1000) / 1000 : 0;
  }
  const report: FloorReport = {
    instances: measured,
    cpuMsPerInstance: measured ? Math.round(((used.user + used.system) / 1000 / measured) * 100) / 100 : 0,
    sent: Object.fromEntries(Object.entries(sent).map(([k, v]) => [k, measured ? Math.round((v / measured) * 100) / 100 : 0])),
    seconds: (Date.now() - started) / 1000,
    cpuMsPerRequest,
  };
  process.stdout.write(`${FLOOR_PREFIX}${JSON.stringify(report)}\n`);
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}
