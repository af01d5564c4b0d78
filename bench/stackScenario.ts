/**
 * The whole local stack under a burst: N CT slices land in the landing container at once (as a
 * scanner's series replicated by the archive would), the blob proxy raises one BlobCreated per
 * file, the local host runs the ingest function, and the bench waits until the index has
 * recorded every file. Latency per instance runs from the moment its upload completed (the
 * blob exists, the event is raised) to its `catalogedAt`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Container, CosmosClient } from '@azure/cosmos';
import { BlobServiceClient } from '@azure/storage-blob';

import { LocalStack, startStack } from '../local/stack';
import type { IngestionDocument } from '../shared/catalog/documents';
import { createRequestCounter, Relay, RequestCounts, startRelay } from './requestCounter';
import { percentile, round } from './stats';

export interface StackScenarioOptions {
  projectRoot: string;
  /** Files to upload; the blob name is the path relative to `root`. */
  files: string[];
  root: string;
  workDir: string;
  uploadConcurrency: number;
  /** Gives up when the index has not moved for this long. */
  stallTimeoutMs: number;
  deidKey: string;
}

export interface StackResult {
  events: number;
  cataloged: number;
  instancesPerSecond: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
}

export interface StackDetails {
  failed: number;
  /** Uploads the blob proxy answered with an error and the bench sent again. */
  uploadRetries: number;
  uploadSeconds: number;
  totalSeconds: number;
  eventDelivery: { concurrency: string; maxConcurrentIngestions: string; retried: number; deadLettered: number };
  researchInstances: number;
  perInstance: {
    blob: Record<string, number>;
    blobOperations: Record<string, number>;
    cosmos: Record<string, number>;
    cosmosOperations: Record<string, number>;
  };
  averageDocumentBytes: { instance: number; series: number; study: number; index: number };
  documentCounts: { instance: number; series: number; study: number; index: number };
  raw: RequestCounts;
  warnings: number;
  errors: number;
  note?: string;
}

const TERMINAL = ['cataloged', 'failed', 'quarantined'];

function perInstance(counts: Record<string, number>, n: number): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, n > 0 ? round(v / n, 2) : 0]));
}

/** Size of a document as stored, without the system properties Cosmos adds. */
function documentBytes(doc: Record<string, unknown>): number {
  const { _rid: _a, _self: _b, _etag: _c, _attachments: _d, _ts: _e, ...rest } = doc;
  return Buffer.byteLength(JSON.stringify(rest));
}

async function count(container: Container, where: string): Promise<number> {
  const { resources } = await container.items.query<number>(`SELECT VALUE COUNT(1) FROM c WHERE ${where}`).fetchAll();
  return resources[0] ?? 0;
}

export async function runStackScenario(options: StackScenarioOptions): Promise<{ stack: StackResult; details: StackDetails }> {
  const counter = createRequestCounter();
  const logFile = path.join(options.workDir, 'stack.log');
  const log = fs.createWriteStream(logFile);
  let warnings = 0;
  let errors = 0;
  let stack: LocalStack | undefined;
  let blobRelay: Relay | undefined;
  let cosmosRelay: Relay | undefined;
  try {
    stack = await startStack({
      projectRoot: options.projectRoot,
      ports: { blob: 0, queue: 0, cosmos: 0, functions: 0 },
      persistence: { inMemory: true },
      localSettings: false,
      dataDir: options.workDir,
      deidKey: options.deidKey,
      deidKeyId: 'bench',
      // Synthetic CT carries no burned-in text; the default policy would hold some SOP classes for review.
      env: { BURNED_IN_POLICY: 'allow' },
      logSink: (level, functionName, message) => {
        if (level === 'warning') warnings += 1;
        if (level === 'error' || level === 'critical') errors += 1;
        log.write(`${new Date().toISOString()} [${level}] ${functionName || 'host'}: ${message}\n`);
      },
    });
    const running = stack;
    counter.watch({ blob: running.blobPort, cosmos: running.cosmosPort });
    counter.reset();

    const settings = running.settings;
    blobRelay = await startRelay(running.blobPort);
    cosmosRelay = await startRelay(running.cosmosPort);
    const relayedStorage = (running.env.SourceStorage ?? '').replace(`:${running.blobPort}/`, `:${blobRelay.port}/`);
    const landing = BlobServiceClient.fromConnectionString(relayedStorage).getContainerClient(settings.sourceContainers[0] ?? '');
    const cosmosKey = /AccountKey=([^;]+)/.exec(running.env.CosmosDb ?? '')?.[1] ?? '';
    const cosmos = new CosmosClient({ endpoint: `http://127.0.0.1:${cosmosRelay.port}/`, key: cosmosKey, connectionPolicy: { enableEndpointDiscovery: false } });
    const database = cosmos.database(settings.cosmosDatabase);
    const index = database.container(settings.indexContainer);
    const research = database.container(settings.researchCatalogContainer);

    const uploadedAt = new Map<string, number>();
    const names = options.files.map((f) => path.relative(options.root, f).split(path.sep).join('/'));
    const started = Date.now();
    let next = 0;
    let uploadRetries = 0;
    const uploader = async () => {
      for (;;) {
        const i = next++;
        const file = options.files[i];
        const name = names[i];
        if (file === undefined || name === undefined) return;
        const data = await fs.promises.readFile(file);
        // The blob proxy answers 502 when Azurite drops a kept-alive socket under load; the
        // archive's replication would retry such a write, so the bench does too (and counts it).
        for (let attempt = 1; ; attempt++) {
          try {
            await landing.getBlockBlobClient(name).uploadData(data);
            break;
          } catch (err) {
            if (attempt >= 5) throw err;
            uploadRetries += 1;
          }
        }
        uploadedAt.set(name, Date.now());
      }
    };
    await Promise.all(Array.from({ length: options.uploadConcurrency }, uploader));
    const uploadSeconds = (Date.now() - started) / 1000;

    let done = 0;
    let lastProgress = Date.now();
    let note: string | undefined;
    while (done < options.files.length) {
      await new Promise((r) => setTimeout(r, 250));
      const now = await count(index, `c.status IN (${TERMINAL.map((s) => `'${s}'`).join(', ')})`);
      if (now > done) {
        done = now;
        lastProgress = Date.now();
      } else if (Date.now() - lastProgress > options.stallTimeoutMs) {
        note = `stalled: ${done} of ${options.files.length} files reached a final state; nothing moved for ${options.stallTimeoutMs / 1000} s`;
        break;
      }
    }
    const totalSeconds = (Date.now() - started) / 1000;
    const counts = counter.snapshot();

    const indexDocs = await index.items.query<IngestionDocument & Record<string, unknown>>('SELECT * FROM c').fetchAll();
    const latencies: number[] = [];
    let cataloged = 0;
    let failed = 0;
    let lastCataloged = started;
    for (const doc of indexDocs.resources) {
      if (doc.status !== 'cataloged') {
        if (TERMINAL.includes(doc.status)) failed += 1;
        continue;
      }
      cataloged += 1;
      const at = doc.catalogedAt ? Date.parse(doc.catalogedAt) : NaN;
      const up = uploadedAt.get(doc.blobName);
      if (Number.isFinite(at) && up !== undefined) {
        latencies.push(Math.max(0, at - up));
        lastCataloged = Math.max(lastCataloged, at);
      }
    }
    const researchDocs = await research.items.query<Record<string, unknown>>('SELECT * FROM c').fetchAll();
    const sizes = { instance: [] as number[], series: [] as number[], study: [] as number[], index: indexDocs.resources.map((d) => documentBytes(d)) };
    for (const doc of researchDocs.resources) {
      const type = doc.type as string;
      if (type === 'instance' || type === 'series' || type === 'study') sizes[type].push(documentBytes(doc));
    }
    const average = (v: number[]) => (v.length ? Math.round(v.reduce((a, b) => a + b, 0) / v.length) : 0);
    const stats = running.events.stats();
    const span = (lastCataloged - started) / 1000;
    const pct = (p: number) => (latencies.length ? Math.round(percentile(latencies, p)) : 0);

    return {
      stack: {
        events: options.files.length,
        cataloged,
        instancesPerSecond: span > 0 ? round(cataloged / span, 1) : 0,
        p50Ms: pct(50),
        p95Ms: pct(95),
        p99Ms: pct(99),
      },
      details: {
        failed,
        uploadRetries,
        uploadSeconds: round(uploadSeconds, 2),
        totalSeconds: round(totalSeconds, 2),
        eventDelivery: {
          concurrency: process.env.LOCAL_EVENT_CONCURRENCY ?? '16 (default)',
          maxConcurrentIngestions: String(settings.maxConcurrentIngestions),
          retried: stats.retried,
          deadLettered: stats.deadLettered,
        },
        researchInstances: sizes.instance.length,
        perInstance: {
          blob: perInstance(counts.blob, cataloged),
          blobOperations: perInstance(counts.blobOperations, cataloged),
          cosmos: perInstance(counts.cosmos, cataloged),
          cosmosOperations: perInstance(counts.cosmosOperations, cataloged),
        },
        averageDocumentBytes: { instance: average(sizes.instance), series: average(sizes.series), study: average(sizes.study), index: average(sizes.index) },
        documentCounts: { instance: sizes.instance.length, series: sizes.series.length, study: sizes.study.length, index: sizes.index.length },
        raw: counts,
        warnings,
        errors,
        note,
      },
    };
  } finally {
    counter.dispose();
    await blobRelay?.close();
    await cosmosRelay?.close();
    await stack?.stop();
    await new Promise((r) => log.end(r));
  }
}
