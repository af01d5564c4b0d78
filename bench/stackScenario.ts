/**
 * The whole local stack under a burst: N CT slices land in the landing container at once (as a
 * scanner's series replicated by the archive would), the blob proxy raises one BlobCreated per
 * file, the local host runs the ingest function, and the bench waits until the index has
 * recorded every file. Latency per instance runs from the moment its upload completed (the
 * blob exists, the event is raised) to its `catalogedAt`.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Container, CosmosClient } from '@azure/cosmos';
import { BlobServiceClient } from '@azure/storage-blob';

import { azuriteConnectionString } from '../local/emulators';
import { startAzurite } from '../local/services/azurite';
import { LocalStack, startStack } from '../local/stack';
import type { IngestionDocument } from '../shared/catalog/documents';
import { createRequestCounter, Relay, RequestCounts, startRelay } from './requestCounter';
import { percentile, round } from './stats';

export interface StackScenarioOptions {
  projectRoot: string;
  /** Files of the burst; the blob name is the path relative to `root`. */
  files: string[];
  root: string;
  workDir: string;
  uploadConcurrency: number;
  /** Gives up when the index has not moved for this long. */
  stallTimeoutMs: number;
  deidKey: string;
  /**
   * Paced runs after the burst, on other files (other instances): each uploads `count` files
   * at `ratePerSecond`, or at `capacityShare` of the burst's measured rate.
   */
  paced?: { files: string[]; root: string; runs: ({ ratePerSecond: number } | { capacityShare: number })[]; count: number };
  /** Files for the storage floor (Azurite alone: the three blob transfers of each instance). */
  floorFiles?: string[];
}

export interface LatencyRun {
  events: number;
  cataloged: number;
  instancesPerSecond: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
}

export interface PacedRun extends LatencyRun {
  offeredPerSecond: number;
  /** What the uploader reached (below the offered rate when uploads themselves could not keep up). */
  uploadedPerSecond: number;
}

export interface StackResult extends LatencyRun {
  /** The same stack at steady arrival rates: latency without a burst's queue. */
  paced: PacedRun[];
  /**
   * Azurite alone, with nothing else running: one 512 KB upload, one download and one upload
   * of a copy per instance (what every ingestion needs of storage at the least), 16 at a time.
   */
  storageFloor: { instances: number; instancesPerSecond: number } | null;
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

/** The uploader's report (bench/uploader.ts); its prefix is repeated here so as not to load that script. */
interface UploadReport {
  uploadedAt: Record<string, number>;
  retries: number;
  seconds: number;
}

/** Runs bench/uploader.js in a process of its own and returns its report. */
function upload(job: { connectionString: string; container: string; files: { file: string; name: string }[]; concurrency: number; ratePerSecond?: number }, workDir: string, tag: string): Promise<UploadReport> {
  const jobFile = path.join(workDir, `upload-${tag}.json`);
  fs.writeFileSync(jobFile, JSON.stringify(job));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'uploader.js'), jobFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-2000)));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('UPLOADED '));
      if (code === 0 && line) resolve(JSON.parse(line.slice('UPLOADED '.length)) as UploadReport);
      else reject(new Error(`uploader exited with ${code}: ${err.trim().split('\n').pop() ?? ''}`));
    });
  });
}

/**
 * The least that storage has to do per instance, measured on an Azurite of its own with the
 * same SDK: upload the source, download it, upload a copy. An upper bound for the stack on
 * this machine, whatever the pipeline does.
 */
async function storageFloor(files: string[]): Promise<{ instances: number; instancesPerSecond: number }> {
  const azurite = await startAzurite({ blobPort: 0, queuePort: 0 });
  try {
    const service = BlobServiceClient.fromConnectionString(azuriteConnectionString(azurite.blobPort, azurite.queuePort, azurite.host));
    const landing = service.getContainerClient('floor-landing');
    const copies = service.getContainerClient('floor-copies');
    await landing.createIfNotExists();
    await copies.createIfNotExists();
    const data = await Promise.all(files.map((f) => fs.promises.readFile(f)));
    let next = 0;
    const started = Date.now();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = next++; i < data.length; i = next++) {
          const body = data[i] as Buffer;
          await landing.getBlockBlobClient(`f${i}`).uploadData(body);
          const got = await landing.getBlobClient(`f${i}`).downloadToBuffer();
          await copies.getBlockBlobClient(`f${i}`).uploadData(got);
        }
      }),
    );
    const seconds = (Date.now() - started) / 1000;
    return { instances: files.length, instancesPerSecond: round(files.length / seconds, 1) };
  } finally {
    await azurite.stop();
  }
}

export async function runStackScenario(options: StackScenarioOptions): Promise<{ stack: StackResult; details: StackDetails }> {
  const counter = createRequestCounter();
  const logFile = path.join(options.workDir, 'stack.log');
  const log = fs.createWriteStream(logFile);
  let warnings = 0;
  let errors = 0;
  let stack: LocalStack | undefined;
  let cosmosRelay: Relay | undefined;
  try {
    const floor = options.floorFiles?.length ? await storageFloor(options.floorFiles) : null;
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
    cosmosRelay = await startRelay(running.cosmosPort);
    // The uploader runs in a process of its own, so its requests are not counted: it talks to
    // the blob endpoint (the event source in front of Azurite) directly.
    const storage = running.env.SourceStorage ?? '';
    const container = settings.sourceContainers[0] ?? '';
    const cosmosKey = /AccountKey=([^;]+)/.exec(running.env.CosmosDb ?? '')?.[1] ?? '';
    const cosmos = new CosmosClient({ endpoint: `http://127.0.0.1:${cosmosRelay.port}/`, key: cosmosKey, connectionPolicy: { enableEndpointDiscovery: false } });
    const database = cosmos.database(settings.cosmosDatabase);
    const index = database.container(settings.indexContainer);
    const research = database.container(settings.researchCatalogContainer);
    const terminal = `c.status IN (${TERMINAL.map((s) => `'${s}'`).join(', ')})`;

    /** Uploads one set of files and waits until the index holds a final state for each. */
    const phase = async (files: string[], root: string, tag: string, ratePerSecond?: number) => {
      const before = await count(index, terminal);
      const job = files.map((file) => ({ file, name: path.relative(root, file).split(path.sep).join('/') }));
      const started = Date.now();
      const uploaded = await upload(
        { connectionString: storage, container, files: job, concurrency: ratePerSecond ? 64 : options.uploadConcurrency, ratePerSecond },
        options.workDir,
        tag,
      );
      let done = 0;
      let lastProgress = Date.now();
      let note: string | undefined;
      while (done < files.length) {
        await new Promise((r) => setTimeout(r, 250));
        const now = (await count(index, terminal)) - before;
        if (now > done) {
          done = now;
          lastProgress = Date.now();
        } else if (Date.now() - lastProgress > options.stallTimeoutMs) {
          note = `stalled: ${done} of ${files.length} files reached a final state; nothing moved for ${options.stallTimeoutMs / 1000} s`;
          break;
        }
      }
      const names = new Set(job.map((j) => j.name));
      const all = await index.items.query<IngestionDocument & Record<string, unknown>>('SELECT * FROM c').fetchAll();
      const docs = all.resources.filter((d) => names.has(d.blobName));
      const latencies: number[] = [];
      let cataloged = 0;
      let failed = 0;
      let lastCataloged = started;
      for (const doc of docs) {
        if (doc.status !== 'cataloged') {
          if (TERMINAL.includes(doc.status)) failed += 1;
          continue;
        }
        cataloged += 1;
        const at = doc.catalogedAt ? Date.parse(doc.catalogedAt) : NaN;
        const up = uploaded.uploadedAt[doc.blobName];
        if (Number.isFinite(at) && up !== undefined) {
          latencies.push(Math.max(0, at - up));
          lastCataloged = Math.max(lastCataloged, at);
        }
      }
      const span = (lastCataloged - started) / 1000;
      const pct = (p: number) => (latencies.length ? Math.round(percentile(latencies, p)) : 0);
      const result: LatencyRun = {
        events: files.length,
        cataloged,
        instancesPerSecond: span > 0 ? round(cataloged / span, 1) : 0,
        p50Ms: pct(50),
        p95Ms: pct(95),
        p99Ms: pct(99),
      };
      return { result, failed, note, uploaded, totalSeconds: (Date.now() - started) / 1000, indexDocs: docs };
    };

    const burst = await phase(options.files, options.root, 'burst');
    const counts = counter.snapshot();

    const paced: PacedRun[] = [];
    if (options.paced) {
      let offset = 0;
      for (const [i, run] of options.paced.runs.entries()) {
        const files = options.paced.files.slice(offset, offset + options.paced.count);
        offset += options.paced.count;
        if (files.length === 0) break;
        const rate = 'ratePerSecond' in run ? run.ratePerSecond : Math.max(1, round(burst.result.instancesPerSecond * run.capacityShare, 1));
        const r = await phase(files, options.paced.root, `paced-${i}`, rate);
        paced.push({ offeredPerSecond: rate, uploadedPerSecond: round(files.length / Math.max(r.uploaded.seconds, 1e-3), 1), ...r.result });
      }
    }

    const researchDocs = await research.items.query<Record<string, unknown>>('SELECT * FROM c').fetchAll();
    const sizes = {
      instance: [] as number[],
      series: [] as number[],
      study: [] as number[],
      index: burst.indexDocs.map((d) => documentBytes(d)),
    };
    for (const doc of researchDocs.resources) {
      const type = doc.type as string;
      if (type === 'instance' || type === 'series' || type === 'study') sizes[type].push(documentBytes(doc));
    }
    const average = (v: number[]) => (v.length ? Math.round(v.reduce((a, b) => a + b, 0) / v.length) : 0);
    const stats = running.events.stats();
    const cataloged = burst.result.cataloged;

    return {
      stack: { ...burst.result, paced, storageFloor: floor },
      details: {
        failed: burst.failed,
        uploadRetries: burst.uploaded.retries,
        uploadSeconds: round(burst.uploaded.seconds, 2),
        totalSeconds: round(burst.totalSeconds, 2),
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
        note: burst.note,
      },
    };
  } finally {
    counter.dispose();
    await cosmosRelay?.close();
    await stack?.stop();
    await new Promise((r) => log.end(r));
  }
}
