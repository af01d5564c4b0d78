/**
 * The request floor of the stack scenario, in a process of its own: the storage and catalog
 * requests one ingestion makes, sent with the same SDK clients the function host builds
 * (blobServiceClient, createCosmosClient) and nothing else: no parsing, no de-identification,
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
}

export const FLOOR_PREFIX = 'FLOOR ';
const CONCURRENCY = 16;
/** Instances per series, as in the burst (250 slices per series). */
const SERIES_SIZE = 250;

/** True when the `i`-th instance sends a request of a kind sent `rate` times per instance (spread evenly). */
function due(i: number, rate: number, copy: number): boolean {
  return Math.floor((i + 1) * rate) - Math.floor(i * rate) > copy;
}

async function main(): Promise<void> {
  const job = JSON.parse(fs.readFileSync(process.argv[2] ?? '', 'utf8')) as FloorJob;
  const blobs = blobServiceClient(job.storage);
  const landing = blobs.getContainerClient(job.container);
  const copies = blobs.getContainerClient('request-floor');
  await copies.createIfNotExists();
  const database = createCosmosClient(job.cosmos).database(job.database);
  const { container: catalog } = await database.containers.createIfNotExists({ id: 'request-floor', partitionKey: { paths: ['/studyInstanceUid'] } });
  const rate = (kind: string) => job.mix[kind] ?? 0;
  const sent: Record<string, number> = {};
  const count = (kind: string) => (sent[kind] = (sent[kind] ?? 0) + 1);
  const summaries = new Map<string, string>();

  const one = async (i: number): Promise<void> => {
    const study = `floor.${Math.floor(i / (SERIES_SIZE * 4))}`;
    const series = `floor.${Math.floor(i / SERIES_SIZE)}`;
    const name = job.blobs[i % job.blobs.length] ?? '';
    const reads: Promise<unknown>[] = [];
    let source: Buffer = Buffer.alloc(0);
    // The source read (to the end) and the index read, at once, as the host does.
    for (let k = 0; due(i, rate('GetBlob'), k); k++) {
      count('GetBlob');
      reads.push(landing.getBlobClient(name).download(0).then(async (r) => {
        const chunks: Buffer[] = [];
        for await (const chunk of r.readableStreamBody ?? []) chunks.push(chunk as Buffer);
        source = Buffer.concat(chunks);
      }));
    }
    for (let k = 0; due(i, rate('pointRead'), k); k++) {
      count('pointRead');
      reads.push(catalog.item(`absent-${i}-${k}`, study).read().catch(() => undefined));
    }
    await Promise.all(reads);
    for (let k = 0; due(i, rate('GetBlobProperties'), k); k++) {
      count('GetBlobProperties');
      await landing.getBlobClient(name).getProperties();
    }
    for (let k = 0; due(i, rate('PutBlob'), k); k++) {
      count('PutBlob');
      await copies.getBlockBlobClient(`${i}-${k}.dcm`).uploadData(source, { conditions: { ifNoneMatch: '*' } });
    }
    for (let k = 0; due(i, rate('create'), k); k++) {
      count('create');
      const body = k % 2 === 0 ? job.instanceDoc : job.indexDoc;
      await withCatalogRecovery(catalog, () => catalog.items.create({ ...body, id: `doc-${i}-${k}`, studyInstanceUid: study, seriesInstanceUid: series, type: 'instance' }));
    }
    for (let k = 0; due(i, rate('query'), k); k++) {
      count('query');
      await catalog.items
        .query({ query: "SELECT c.id, c.sopClassUid, c.updatedAt FROM c WHERE c.type = 'instance' AND c.seriesInstanceUid = @s AND c.studyInstanceUid = @pk", parameters: [{ name: '@s', value: series }, { name: '@pk', value: study }] }, { partitionKey: study })
        .fetchAll();
    }
    for (let k = 0; due(i, rate('replace'), k); k++) {
      count('replace');
      const id = `summary-${series}`;
      const etag = summaries.get(id);
      const doc = { ...job.instanceDoc, id, studyInstanceUid: study, type: 'series', updatedAt: new Date().toISOString() };
      const r = etag
        ? await catalog.item(id, study).replace(doc, { accessCondition: { type: 'IfMatch', condition: etag } }).catch(() => catalog.item(id, study).replace(doc))
        : await catalog.items.upsert(doc);
      summaries.set(id, r.etag ?? '');
    }
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
  const report: FloorReport = {
    instances: measured,
    cpuMsPerInstance: measured ? Math.round(((used.user + used.system) / 1000 / measured) * 100) / 100 : 0,
    sent: Object.fromEntries(Object.entries(sent).map(([k, v]) => [k, measured ? Math.round((v / measured) * 100) / 100 : 0])),
    seconds: (Date.now() - started) / 1000,
  };
  process.stdout.write(`${FLOOR_PREFIX}${JSON.stringify(report)}\n`);
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}
