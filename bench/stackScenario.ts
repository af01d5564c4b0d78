/**
 * The whole local stack under a burst: N CT slices land in the landing container at once (as a
 * scanner's series replicated by the archive would), the blob proxy raises one BlobCreated per
 * file, the function host runs the ingest function, and the bench waits until the index has
 * recorded every file. Latency per instance runs from the moment its upload completed (the
 * blob exists, the event is raised) to its `catalogedAt`.
 *
 * Every part runs in a process of its own, so that each one's CPU time is read apart: the
 * function host (local/hostProcess.ts), Azurite, the Cosmos DB server, the uploader (the
 * archive's side), and this process, which holds the Event Grid stand-in (the blob proxy that
 * raises and delivers events) and the bench's own polling. In Azure only the host's CPU is the
 * pipeline's to pay for: it is `hostCpuMsPerInstance`.
 *
 * Wired as Azure is: the host and the uploader reach Azurite directly, and the uploader reports
 * each committed upload for the stand-in to raise its event, as storage tells Event Grid of a
 * write (nothing replays the bytes). BENCH_UPLOADS=proxy sends the uploads through the stand-in's
 * proxy, which sees the writes itself; BENCH_DIRECT=0 sends the host's blob requests through it
 * too, as `npm start` does. The storage floor has no stand-in either.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';

import { Container, CosmosClient } from '@azure/cosmos';
import { BlobServiceClient } from '@azure/storage-blob';

import { azuriteConnectionString } from '../local/emulators';
import { HostProcess, startHostProcess } from '../local/hostProcess';
import { startAzurite } from '../local/services/azurite';
import type { IngestionDocument } from '../shared/catalog/documents';
import { startBenchServices } from './benchServices';
import { RequestCounts } from './requestCounter';
import { FLOOR_PREFIX, FloorJob, FloorReport } from './requestFloor';
import { percentile, round } from './stats';
import { UPLOAD_CONTENT_TYPE, UPLOADED_PREFIX, UploadJob, UploadReport, UploadWritten, WRITTEN_PREFIX } from './uploadJob';

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
  /**
   * Files of other instances that go through the stack before the burst, unmeasured, so that
   * the host is as warm as an instance that has handled a few hundred files (the core is
   * measured warm too).
   */
  warmUp?: { files: string[]; root: string };
  /**
   * Writes a CPU profile of the function host over the burst to this file. The profiler costs
   * the host CPU: take the CPU figures from a run without it.
   */
  hostProfileFile?: string;
}

/** CPU time per cataloged instance of each process of the stack, ms. */
export interface StackCpu {
  /** The function host alone: what Azure bills as instance-seconds. */
  host: number;
  /** Azurite (blob storage). */
  azurite: number | null;
  /** The Cosmos DB emulator server. */
  cosmos: number | null;
  /** The archive's uploads. */
  uploader: number;
  /** This process: the Event Grid stand-in (the blob proxy and event delivery) and the bench's polling. */
  eventSourceAndBench: number;
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
  /** CPU ms per cataloged instance of each process over this run. */
  cpuMsPerInstance: StackCpu;
  offeredPerSecond: number;
  /** What the uploader reached (below the offered rate when uploads themselves could not keep up). */
  uploadedPerSecond: number;
}

export interface StackResult extends LatencyRun {
  /**
   * CPU time of the function host's process per cataloged instance of the burst, ms (process
   * CPU accounting: user and system time, every thread of that process and nothing else).
   */
  hostCpuMsPerInstance: number;
  /** The same accounting for every process of the stack, over the burst. */
  cpuMsPerInstance: StackCpu;
  /** The same stack at steady arrival rates: latency without a burst's queue. */
  paced: PacedRun[];
  /**
   * Azurite alone, with nothing else running: one 512 KB upload, one download and one upload
   * of a copy per instance (what every ingestion needs of storage at the least), 16 at a time.
   */
  storageFloor: StorageFloor | null;
  /**
   * The host's requests alone (bench/requestFloor.ts): the same mix per instance, sent with the
   * same clients as the host (the SDKs, and BlobHttp for Get and Put Blob) from a process that
   * does nothing else, on the same services. Its CPU per instance is the part of
   * `hostCpuMsPerInstance` that only fewer requests can remove.
   */
  requestFloor: FloorReport;
}

export interface StackDetails {
  failed: number;
  /** Uploads the blob proxy answered with an error and the bench sent again. */
  uploadRetries: number;
  uploadSeconds: number;
  totalSeconds: number;
  eventDelivery: { concurrency: string; maxConcurrentIngestions: string; retried: number; deadLettered: number };
  /** How the host's blob requests and the uploads reach Azurite: straight, or through the stand-in's proxy. */
  wiring: { host: 'direct' | 'stand-in'; uploads: 'direct, announced' | 'stand-in' };
  researchInstances: number;
  perInstance: {
    blob: Record<string, number>;
    blobOperations: Record<string, number>;
    blobKinds: Record<string, number>;
    cosmos: Record<string, number>;
    cosmosOperations: Record<string, number>;
    cosmosKinds: Record<string, number>;
    cosmosContainerKinds: Record<string, number>;
  };
  averageDocumentBytes: { instance: number; series: number; study: number; index: number };
  documentCounts: { instance: number; series: number; study: number; index: number };
  raw: RequestCounts;
  /** Instances that went through the stack, unmeasured, before the burst. */
  warmUpInstances: number;
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

let clockTicks: number | undefined;
/** CPU time (user and system) of another process so far, ms, from /proc; null where there is no /proc. */
export function processCpuMs(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start with the state, field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    clockTicks ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks;
  } catch {
    return null;
  }
}

function cpuMs(usage: NodeJS.CpuUsage): number {
  return (usage.user + usage.system) / 1000;
}

/**
 * Runs a bench script (`bench/<script>.js <job.json>`) in a process of its own and returns the
 * report it prints on one line after `prefix`.
 */
function runJob<T>(script: string, job: unknown, jobFile: string, prefix: string, onLine?: (line: string) => void): Promise<T> {
  fs.writeFileSync(jobFile, JSON.stringify(job));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, `${script}.js`), jobFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    // Every line, the last one too, is read before the child's 'close' (it waits for stdout to end).
    readline.createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', (line) => {
      if (line.startsWith(prefix)) out = line;
      else onLine?.(line);
    });
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-2000)));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0 && out) resolve(JSON.parse(out.slice(prefix.length)) as T);
      else reject(new Error(`${script} exited with ${code}: ${err.trim().split('\n').pop() ?? ''}`));
    });
  });
}

/**
 * The archive's uploads (bench/uploader.ts), in a process of its own. With `written`, each
 * committed upload is reported as it completes (the uploader's `announce`).
 */
function upload(job: UploadJob, workDir: string, tag: string, written?: (w: UploadWritten) => void): Promise<UploadReport> {
  return runJob<UploadReport>('uploader', job, path.join(workDir, `upload-${tag}.json`), UPLOADED_PREFIX, (line) => {
    if (written && line.startsWith(WRITTEN_PREFIX)) written(JSON.parse(line.slice(WRITTEN_PREFIX.length)) as UploadWritten);
  });
}

/** The request floor (bench/requestFloor.ts), in a process of its own. */
function sendRequestFloor(job: FloorJob, workDir: string): Promise<FloorReport> {
  return runJob<FloorReport>('requestFloor', job, path.join(workDir, 'request-floor.json'), FLOOR_PREFIX);
}

/** One document of a container, without the system properties Cosmos adds. */
async function sampleDocument(container: Container, query: string): Promise<Record<string, unknown>> {
  const { resources } = await container.items.query<Record<string, unknown>>(query).fetchAll();
  const { _rid: _a, _self: _b, _etag: _c, _attachments: _d, _ts: _e, ...doc } = resources[0] ?? {};
  return doc;
}

/** The storage floor: its rate, and the CPU it took per instance (Azurite's process, and this one's as the client). */
export interface StorageFloor {
  instances: number;
  instancesPerSecond: number;
  cpuMsPerInstance: { azurite: number | null; client: number };
  /** The rate of each run it was chosen from (the median run), in the order they ran. */
  runRates?: number[];
  /** How many of those ran before the burst; the rest ran after it. */
  runsBeforeBurst?: number;
}

/**
 * Runs of the storage floor before the burst (BENCH_FLOOR_RUNS overrides). One run of 500 files
 * took 4-6 s and moved by up to a third from one bench to the next on the same build (0.13.0:
 * 88-129 instances/s), which moved the throughput ratio as much.
 */
const FLOOR_RUNS = 3;

/**
 * Runs of the storage floor after the burst (BENCH_FLOOR_RUNS_AFTER overrides), with the stack
 * idle: the floor on both sides of the burst, so that a machine that slows down or speeds up
 * during a bench moves both sides of the ratio. On 2026-12-04 evening two benches of the same
 * build minutes apart gave 0.84x and 0.56x with the floor measured before the burst only.
 */
const FLOOR_RUNS_AFTER = 2;

/** The run with the median rate, whole (its rate and its CPU together), with every run's rate. */
export function medianFloor(runs: StorageFloor[], runsBeforeBurst = runs.length): StorageFloor | null {
  const sorted = [...runs].sort((a, b) => a.instancesPerSecond - b.instancesPerSecond);
  const median = sorted[Math.floor((sorted.length - 1) / 2)];
  return median ? { ...median, runRates: runs.map((r) => r.instancesPerSecond), runsBeforeBurst } : null;
}

/**
 * The least that storage has to do per instance, measured on an Azurite of its own with the
 * same SDK: upload the source, download it, upload a copy. An upper bound for the stack on
 * this machine, whatever the pipeline does.
 */
async function storageFloor(files: string[]): Promise<StorageFloor> {
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
    const azuriteBefore = processCpuMs(azurite.pid);
    const clientBefore = cpuMs(process.cpuUsage());
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = next++; i < data.length; i = next++) {
          const body = data[i] as Buffer;
          await landing.getBlockBlobClient(`f${i}`).uploadData(body, { blobHTTPHeaders: { blobContentType: UPLOAD_CONTENT_TYPE } });
          const got = await landing.getBlobClient(`f${i}`).downloadToBuffer();
          await copies.getBlockBlobClient(`f${i}`).uploadData(got);
        }
      }),
    );
    const seconds = (Date.now() - started) / 1000;
    const azuriteAfter = processCpuMs(azurite.pid);
    const per = (ms: number) => round(ms / files.length, 2);
    return {
      instances: files.length,
      instancesPerSecond: round(files.length / seconds, 1),
      cpuMsPerInstance: {
        azurite: azuriteBefore === null || azuriteAfter === null ? null : per(azuriteAfter - azuriteBefore),
        client: per(cpuMs(process.cpuUsage()) - clientBefore),
      },
    };
  } finally {
    await azurite.stop();
  }
}

/**
 * How often a phase counts the index records in a final state. Each count is a query that the
 * Cosmos server answers by scanning the index container: about 5.5 ms of its CPU at 2,000
 * documents, so a count every 250 ms took the server about 0.25 ms of CPU per instance of the
 * burst, work the pipeline does not do. The rate and the latencies come from the records' own
 * times, so polling less often does not change them.
 */
const PROGRESS_POLL_MS = 1000;

/** What each process of the stack has used so far, to take differences of. */
interface CpuMark {
  host: number;
  azurite: number | null;
  cosmos: number | null;
  self: number;
}

function cpuPerInstance(from: CpuMark, to: CpuMark, uploaderMs: number, instances: number): StackCpu {
  const per = (a: number | null, b: number | null) => (a === null || b === null || instances === 0 ? null : round((b - a) / instances, 2));
  return {
    host: per(from.host, to.host) ?? 0,
    azurite: per(from.azurite, to.azurite),
    cosmos: per(from.cosmos, to.cosmos),
    uploader: instances > 0 ? round(uploaderMs / instances, 2) : 0,
    eventSourceAndBench: per(from.self, to.self) ?? 0,
  };
}

/**
 * How many events the stand-in delivers at once: host.json's `maxConcurrentRequests`, the most
 * the Functions host takes at once. Event Grid has no fixed limit of its own; it matches its
 * rate to the function's. The stand-in's default for `npm start` (16) made the bench measure
 * how long each delivery waits on the summary refreshes, not what the host can do: with 16
 * deliveries at once the burst left the two cores 1.55 busy (0.11.0), against 1.7 for the storage floor.
 */
function hostHttpConcurrency(projectRoot: string): number {
  const hostJson = JSON.parse(fs.readFileSync(path.join(projectRoot, 'host.json'), 'utf8')) as { extensions?: { http?: { maxConcurrentRequests?: number } } };
  const n = hostJson.extensions?.http?.maxConcurrentRequests;
  if (!Number.isInteger(n) || (n as number) < 1) throw new Error('host.json has no extensions.http.maxConcurrentRequests');
  return n as number;
}

export async function runStackScenario(options: StackScenarioOptions): Promise<{ stack: StackResult; details: StackDetails }> {
  const stops: (() => Promise<void>)[] = [];
  try {
    const floorRuns: StorageFloor[] = [];
    const floorCount = process.env.BENCH_FLOOR_RUNS ? Number(process.env.BENCH_FLOOR_RUNS) : FLOOR_RUNS;
    for (let i = 0; options.floorFiles?.length && i < floorCount; i++) floorRuns.push(await storageFloor(options.floorFiles));
    const floorRunsBefore = floorRuns.length;

    // The services as local/stack.ts wires them, with the function host in a process of its own.
    const eventConcurrency = process.env.LOCAL_EVENT_CONCURRENCY ? Number(process.env.LOCAL_EVENT_CONCURRENCY) : hostHttpConcurrency(options.projectRoot);
    const direct = process.env.BENCH_DIRECT !== '0';
    // With the direct wiring the uploads go to Azurite too, and the uploader reports each write
    // for the stand-in to raise its event, as storage tells Event Grid in Azure; BENCH_UPLOADS=proxy
    // sends them through the stand-in's proxy, which sees the writes itself (as in `npm start`).
    const announce = direct && process.env.BENCH_UPLOADS !== 'proxy';
    const { azurite, events, cosmosServer, storage, directStorage, env, settings } = await startBenchServices({ workDir: options.workDir, deidKey: options.deidKey, eventConcurrency, direct }, stops);
    const functionHost: HostProcess = await startHostProcess({
      projectRoot: options.projectRoot,
      env,
      logFile: path.join(options.workDir, 'stack.log'),
      countRequests: { blob: direct ? azurite.blobPort : events.port, cosmos: cosmosServer.port },
      // BENCH_HOST_NODE_ARGS: options for the host's Node, to compare a V8 setting (e.g. `--max-semi-space-size=64`).
      nodeArgs: process.env.BENCH_HOST_NODE_ARGS?.split(' ').filter(Boolean),
    });
    stops.push(() => functionHost.stop());
    events.setWebhookBaseUrl(functionHost.url);

    const container = settings.sourceContainers[0] ?? '';
    const cosmosKey = /AccountKey=([^;]+)/.exec(cosmosServer.connectionString)?.[1] ?? '';
    const cosmos = new CosmosClient({ endpoint: cosmosServer.endpoint, key: cosmosKey, connectionPolicy: { enableEndpointDiscovery: false } });
    const database = cosmos.database(settings.cosmosDatabase);
    const index = database.container(settings.indexContainer);
    const research = database.container(settings.researchCatalogContainer);
    const terminal = `c.status IN (${TERMINAL.map((s) => `'${s}'`).join(', ')})`;
    const mark = async (): Promise<CpuMark> => ({
      host: cpuMs(await functionHost.cpuUsage()),
      azurite: processCpuMs(azurite.pid),
      cosmos: processCpuMs(cosmosServer.pid),
      self: cpuMs(process.cpuUsage()),
    });

    /** Uploads one set of files and waits until the index holds a final state for each. */
    const phase = async (files: string[], root: string, tag: string, ratePerSecond?: number) => {
      const before = await count(index, terminal);
      // Under a folder of the phase's own: the sets of files share relative names, and a name
      // uploaded again would be a new version of an instance, not a new instance.
      const job = files.map((file) => ({ file, name: `${tag}/${path.relative(root, file).split(path.sep).join('/')}` }));
      const cpuBefore = await mark();
      const started = Date.now();
      const uploaded = await upload(
        { connectionString: announce ? directStorage : storage, container, files: job, concurrency: ratePerSecond ? 64 : options.uploadConcurrency, ratePerSecond, announce },
        options.workDir,
        tag,
        announce ? (w) => events.emit({ eventType: 'Microsoft.Storage.BlobCreated', api: 'PutBlob', blobType: 'BlockBlob', ...w }) : undefined,
      );
      // The rate's clock starts with the first upload, as the storage floor's does: not while the
      // uploader process starts and reads its files, when the stack has nothing to do.
      const firstUpload = uploaded.startedAt;
      let done = 0;
      let lastProgress = Date.now();
      let note: string | undefined;
      while (done < files.length) {
        await new Promise((r) => setTimeout(r, PROGRESS_POLL_MS));
        const now = (await count(index, terminal)) - before;
        if (now > done) {
          done = now;
          lastProgress = Date.now();
        } else if (Date.now() - lastProgress > options.stallTimeoutMs) {
          note = `stalled: ${done} of ${files.length} files reached a final state; nothing moved for ${options.stallTimeoutMs / 1000} s`;
          break;
        }
      }
      const cpuAfter = await mark();
      const names = new Set(job.map((j) => j.name));
      const all = await index.items.query<IngestionDocument & Record<string, unknown>>('SELECT * FROM c').fetchAll();
      const docs = all.resources.filter((d) => names.has(d.blobName));
      const latencies: number[] = [];
      let cataloged = 0;
      let failed = 0;
      let lastCataloged = firstUpload;
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
      const span = (lastCataloged - firstUpload) / 1000;
      const pct = (p: number) => (latencies.length ? Math.round(percentile(latencies, p)) : 0);
      const result: LatencyRun = {
        events: files.length,
        cataloged,
        instancesPerSecond: span > 0 ? round(cataloged / span, 1) : 0,
        p50Ms: pct(50),
        p95Ms: pct(95),
        p99Ms: pct(99),
      };
      const cpu = cpuPerInstance(cpuBefore, cpuAfter, uploaded.cpuMs, cataloged);
      return { result, cpu, failed, note, uploaded, totalSeconds: (Date.now() - started) / 1000, indexDocs: docs };
    };

    if (options.warmUp?.files.length) await phase(options.warmUp.files, options.warmUp.root, 'warm-up');
    await functionHost.resetRequests();
    if (options.hostProfileFile) await functionHost.startProfile();
    const burst = await phase(options.files, options.root, 'burst');
    if (options.hostProfileFile) await functionHost.stopProfile(options.hostProfileFile);
    const counts = await functionHost.requests();
    // The same requests without the pipeline, on the same services, before the paced runs add documents.
    const requestFloor = await sendRequestFloor(
      {
        storage: settings.sourceStorage,
        cosmos: settings.cosmos,
        database: settings.cosmosDatabase,
        container,
        blobs: burst.indexDocs.filter((d) => d.status === 'cataloged').map((d) => d.blobName),
        mix: { ...perInstance(counts.blobOperations, burst.result.cataloged), ...perInstance(counts.cosmosKinds, burst.result.cataloged) },
        instanceDoc: await sampleDocument(research, "SELECT TOP 1 * FROM c WHERE c.type = 'instance'"),
        indexDoc: await sampleDocument(index, "SELECT TOP 1 * FROM c WHERE c.status = 'cataloged'"),
        warmUp: Math.min(100, Math.floor(burst.result.cataloged / 5)),
      },
      options.workDir,
    );

    const floorAfter = process.env.BENCH_FLOOR_RUNS_AFTER ? Number(process.env.BENCH_FLOOR_RUNS_AFTER) : FLOOR_RUNS_AFTER;
    for (let i = 0; options.floorFiles?.length && i < floorAfter; i++) floorRuns.push(await storageFloor(options.floorFiles));
    const floor = medianFloor(floorRuns, floorRunsBefore);

    const paced: PacedRun[] = [];
    if (options.paced) {
      let offset = 0;
      for (const [i, run] of options.paced.runs.entries()) {
        const files = options.paced.files.slice(offset, offset + options.paced.count);
        offset += options.paced.count;
        if (files.length === 0) break;
        const rate = 'ratePerSecond' in run ? run.ratePerSecond : Math.max(1, round(burst.result.instancesPerSecond * run.capacityShare, 1));
        const r = await phase(files, options.paced.root, `paced-${i}`, rate);
        paced.push({ offeredPerSecond: rate, uploadedPerSecond: round(files.length / Math.max(r.uploaded.seconds, 1e-3), 1), ...r.result, cpuMsPerInstance: r.cpu });
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
    const stats = events.stats();
    const logCounts = await functionHost.logCounts();
    const cataloged = burst.result.cataloged;

    return {
      stack: { ...burst.result, hostCpuMsPerInstance: burst.cpu.host, cpuMsPerInstance: burst.cpu, paced, storageFloor: floor, requestFloor },
      details: {
        failed: burst.failed,
        uploadRetries: burst.uploaded.retries,
        uploadSeconds: round(burst.uploaded.seconds, 2),
        totalSeconds: round(burst.totalSeconds, 2),
        eventDelivery: {
          concurrency: String(eventConcurrency),
          maxConcurrentIngestions: String(settings.maxConcurrentIngestions),
          retried: stats.retried,
          deadLettered: stats.deadLettered,
        },
        wiring: { host: direct ? 'direct' : 'stand-in', uploads: announce ? 'direct, announced' : 'stand-in' },
        researchInstances: sizes.instance.length,
        perInstance: {
          blob: perInstance(counts.blob, cataloged),
          blobOperations: perInstance(counts.blobOperations, cataloged),
          blobKinds: perInstance(counts.blobKinds, cataloged),
          cosmos: perInstance(counts.cosmos, cataloged),
          cosmosOperations: perInstance(counts.cosmosOperations, cataloged),
          cosmosKinds: perInstance(counts.cosmosKinds, cataloged),
          cosmosContainerKinds: perInstance(counts.cosmosContainerKinds, cataloged),
        },
        averageDocumentBytes: { instance: average(sizes.instance), series: average(sizes.series), study: average(sizes.study), index: average(sizes.index) },
        documentCounts: { instance: sizes.instance.length, series: sizes.series.length, study: sizes.study.length, index: sizes.index.length },
        raw: counts,
        warmUpInstances: options.warmUp?.files.length ?? 0,
        warnings: logCounts.warning,
        errors: logCounts.error,
        note: burst.note,
      },
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  }
}
