/**
 * Reliability tests' harness: a fault stack (local/faultStack.ts) in a child process, the fixture
 * files a scenario uploads, an uploader that keeps trying through outages (as the archive's
 * replication does), and a snapshot of what the pipeline made of the files (index records,
 * research catalog documents, research copies) that can be compared with a clean run.
 */
import { ChildProcess, fork } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

import { CosmosClient } from '@azure/cosmos';
import { BlobServiceClient } from '@azure/storage-blob';

import type { EventSourceStats } from '../../../local/eventSource';
import type { FaultPlan, FaultProxyStats } from '../../../local/faultProxy';
import type { FaultStackInfo, FaultTarget } from '../../../local/faultStack';
import type { FaultStackCommand, FaultStackProcessOptions, FaultStackStats } from '../../../local/faultStackProcess';
import type { IngestionDocument, ResearchDocument } from '../../../shared/catalog/documents';
import { loadSettings, Settings } from '../../../shared/config/settings';

export const PROJECT_ROOT = join(__dirname, '..', '..', '..');
const FIXTURES = join(PROJECT_ROOT, 'test', 'fixtures', 'dicom');
const TERMINAL = new Set(['cataloged', 'failed', 'quarantined', 'deleted']);

/** Test-only key; the same key gives the same research UIDs in every run. */
export const FAULTS_DEID_KEY = 'fault-injection-test-deid-key-0123456789abcdef';

function listFixtures(dir = FIXTURES): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) return listFixtures(p);
      return /\.(tsv|md)$/.test(name) ? [] : [p];
    });
}

/**
 * A fixed selection of real DICOM fixtures (every `step`-th of the sorted list below 1 MB), named
 * by their path under the fixtures folder; the same files every run.
 */
export function selectFixtures(count: number): Map<string, Buffer> {
  const small = listFixtures().filter((f) => statSync(f).size < 1024 * 1024);
  if (small.length < count) throw new Error(`only ${small.length} fixtures below 1 MB, ${count} wanted`);
  const step = small.length / count;
  const files = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    const file = small[Math.floor(i * step)]!;
    files.set(`faults/${relative(FIXTURES, file)}`, readFileSync(file));
  }
  return files;
}

export interface StackController {
  info: FaultStackInfo;
  settings: Settings;
  logFile: string;
  command<T = unknown>(request: FaultStackCommand): Promise<T>;
  stats(): Promise<FaultStackStats>;
  /** Waits until every emitted event was delivered or dead-lettered; throws with the stats after timeoutMs. */
  idle(timeoutMs: number): Promise<FaultStackStats>;
  plan(target: FaultTarget, plan: FaultPlan | null): Promise<void>;
  /** The host log lines at warning level and above, for a failure message. */
  problems(limit?: number): string;
  stop(): Promise<void>;
}

export interface StartOptions {
  blobProxyPort: number;
  eventSource?: FaultStackProcessOptions['eventSource'];
}

/**
 * Starts the fault stack in a child process from the built sources (dist/local). Throws with the
 * child's reason when a service cannot start.
 */
export async function startFaultStackProcess(options: StartOptions): Promise<StackController> {
  const script = join(PROJECT_ROOT, 'dist', 'local', 'faultStackProcess.js');
  if (!existsSync(script)) throw new Error('dist/local/faultStackProcess.js is missing: run "npm run build" first');
  const dataDir = mkdtempSync(join(tmpdir(), 'vna-faults-'));
  const logFile = join(dataDir, 'host.log');
  const processOptions: FaultStackProcessOptions = {
    projectRoot: PROJECT_ROOT,
    dataDir,
    logFile,
    deidKey: FAULTS_DEID_KEY,
    deidKeyId: 'faults',
    blobProxyPort: options.blobProxyPort,
    eventSource: options.eventSource,
  };
  const child: ChildProcess = fork(script, [JSON.stringify(processOptions)], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
  child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));

  const info = await new Promise<FaultStackInfo>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the fault stack did not start within 60 s\n${output}`)), 60_000);
    child.once('message', (m: { ready?: FaultStackInfo; failed?: string }) => {
      clearTimeout(timer);
      if (m.ready) resolve(m.ready);
      else reject(new Error(`the fault stack did not start: ${m.failed ?? 'no reason given'}\n${output}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the fault stack process exited (${code ?? signal}) before it was ready\n${output}`));
    });
  });

  let nextId = 1;
  const waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  child.on('message', (m: { id?: number; ok?: boolean; result?: unknown; error?: string }) => {
    if (m.id === undefined) return;
    const w = waiting.get(m.id);
    waiting.delete(m.id);
    if (m.ok) w?.resolve(m.result);
    else w?.reject(new Error(m.error));
  });
  child.on('exit', (code, signal) => {
    for (const w of waiting.values()) w.reject(new Error(`the fault stack process exited (${code ?? signal})\n${output}`));
    waiting.clear();
  });

  const command = <T>(request: FaultStackCommand): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (child.exitCode !== null || !child.connected) return reject(new Error(`the fault stack process is gone\n${output}`));
      const id = nextId++;
      waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      child.send({ id, ...request });
    });

  // Warnings and errors grouped by message (ids, hashes and times taken out), most frequent first.
  const problems = (limit = 15) => {
    if (!existsSync(logFile)) return '(no host log)';
    const groups = new Map<string, { count: number; example: string }>();
    for (const line of readFileSync(logFile, 'utf8').split('\n')) {
      if (!/\[(warning|error|critical)\]/.test(line) || / (quarantined|failed): [A-Z_]+$/.test(line)) continue;
      const key = line
        .replace(/^\S+ /, '')
        .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<id>')
        .replace(/\b[0-9a-f]{12,}\b/g, '<hash>')
        .replace(/\d+(\.\d+)?/g, 'N')
        .slice(0, 600);
      const g = groups.get(key) ?? { count: 0, example: line.slice(0, 600) };
      g.count += 1;
      groups.set(key, g);
    }
    const top = [...groups.values()].sort((a, b) => b.count - a.count).slice(0, limit);
    return top.length ? top.map((g) => `${g.count} x ${g.example}`).join('\n') : '(none besides expected quarantines and failures)';
  };

  let stopping: Promise<void> | undefined;
  return {
    info,
    settings: loadSettings(info.env),
    logFile,
    command,
    stats: () => command<FaultStackStats>({ command: 'stats' }),
    async idle(timeoutMs) {
      const r = await command<FaultStackStats & { idle: boolean }>({ command: 'idle', timeoutMs });
      if (!r.idle) throw new Error(`blob events still pending after ${timeoutMs} ms: ${JSON.stringify(r.events)}\n${problems()}`);
      return r;
    },
    plan: (target, plan) => command({ command: 'plan', target, plan }),
    problems,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return rmSync(dataDir, { recursive: true, force: true });
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        await command({ command: 'stop' }).catch(() => undefined);
        const force = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(force);
        // Azurite's files and the host log; what a failure needs from the log is in its message.
        // FAULTS_KEEP_DATA=1 keeps them for a closer look.
        if (process.env.FAULTS_KEEP_DATA !== '1') rmSync(dataDir, { recursive: true, force: true });
        else console.log(`fault stack data kept in ${dataDir}`);
      })();
      return stopping;
    },
  };
}

export interface UploadReport {
  /** Blob names whose upload succeeded (the client got a 2xx). */
  uploaded: string[];
  /** Upload attempts that failed and were tried again (storage down). */
  retried: number;
}

/**
 * Uploads every file, `concurrency` at a time, trying a failed upload again until it succeeds or
 * `giveUpAfterMs` passes (the archive's replication does not give up on an outage either).
 * `onUploaded` runs after each success, so a scenario can act part-way through the burst.
 */
export async function uploadAll(
  connectionString: string,
  container: string,
  files: Map<string, Buffer>,
  options: { concurrency: number; giveUpAfterMs: number; onUploaded?: (done: number) => void | Promise<void> },
): Promise<UploadReport> {
  // Few SDK retries: the loop below does the waiting, so an outage does not stall one upload for minutes.
  const client = BlobServiceClient.fromConnectionString(connectionString, { retryOptions: { maxTries: 2, retryDelayInMs: 200, maxRetryDelayInMs: 1000 } });
  const landing = client.getContainerClient(container);
  const queue = [...files.entries()];
  const uploaded: string[] = [];
  let retried = 0;
  const deadline = Date.now() + options.giveUpAfterMs;
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        const [name, data] = next;
        for (;;) {
          try {
            await landing.getBlockBlobClient(name).uploadData(data, { blobHTTPHeaders: { blobContentType: 'application/dicom' } });
            break;
          } catch (err) {
            if (Date.now() > deadline) throw new Error(`upload of ${name} still failing after ${options.giveUpAfterMs} ms: ${(err as Error).message}`);
            retried += 1;
            await new Promise((r) => setTimeout(r, 250));
          }
        }
        uploaded.push(name);
        await options.onUploaded?.(uploaded.length);
      }
    }),
  );
  return { uploaded, retried };
}

/**
 * Deletes the blobs from the landing container (as the archive does when a file is withdrawn),
 * trying again until each delete succeeds or `giveUpAfterMs` passes. Returns the failed attempts.
 */
export async function deleteAll(connectionString: string, container: string, names: string[], giveUpAfterMs: number): Promise<number> {
  const client = BlobServiceClient.fromConnectionString(connectionString, { retryOptions: { maxTries: 2, retryDelayInMs: 200, maxRetryDelayInMs: 1000 } });
  const landing = client.getContainerClient(container);
  const deadline = Date.now() + giveUpAfterMs;
  let retried = 0;
  for (const name of names) {
    for (;;) {
      try {
        await landing.getBlobClient(name).delete();
        break;
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode === 404) break;
        if (Date.now() > deadline) throw new Error(`delete of ${name} still failing after ${giveUpAfterMs} ms: ${(err as Error).message}`);
        retried += 1;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }
  return retried;
}

/** What the pipeline made of the files, with what differs between two runs of the same files removed. */
/** A cataloged source file: the research instance it names, where that lives, and the source's rank. */
export interface SourceOfInstance {
  sop: string;
  rank: string;
  blob: string;
  study: string;
  series: string;
}

export interface PipelineSnapshot {
  /** Landing blob names. */
  landing: string[];
  /** Per landing blob: its index record's status, error code and research instance (or none). */
  index: Map<string, { status: string; errorCode?: string; researchSop?: string }>;
  /** Research catalog documents by id, without timestamps and Cosmos system properties. */
  catalog: Map<string, Record<string, unknown>>;
  /** Research copies: name -> size. */
  researchBlobs: Map<string, number>;
  counts: { studies: number; series: number; instances: number };
  /** Per landing blob that names a research instance: that instance and this source's rank (index record). */
  sources: Map<string, SourceOfInstance>;
  /** Per research instance: the rank of the source its document came from. */
  instanceRanks: Map<string, string>;
}

/**
 * Differ between two uploads of the same file: timestamps, Cosmos system properties, and the
 * source version and the rank drawn from it (each upload is a new version of the blob).
 */
const VOLATILE = new Set(['updatedAt', 'sourceVersion', 'sourceRank', '_rid', '_self', '_etag', '_attachments', '_ts']);

function stable(doc: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(doc).filter(([k]) => !VOLATILE.has(k)).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Reads the landing container, the index and the research catalog directly (no faults, no API auth). */
export async function snapshot(stack: StackController): Promise<PipelineSnapshot> {
  const { settings, info } = stack;
  const blobs = BlobServiceClient.fromConnectionString(info.storageConnectionString);
  const landing: string[] = [];
  for (const container of settings.sourceContainers) {
    for await (const b of blobs.getContainerClient(container).listBlobsFlat()) landing.push(b.name);
  }
  const researchBlobs = new Map<string, number>();
  for await (const b of blobs.getContainerClient(settings.researchContainer).listBlobsFlat()) researchBlobs.set(b.name, b.properties.contentLength ?? -1);

  const cosmosConn = /AccountEndpoint=([^;]+);AccountKey=([^;]+);/.exec(info.cosmosConnectionString);
  if (!cosmosConn) throw new Error('unexpected Cosmos connection string');
  const cosmos = new CosmosClient({ endpoint: cosmosConn[1]!, key: cosmosConn[2]!, connectionPolicy: { enableEndpointDiscovery: false } });
  try {
    const db = cosmos.database(settings.cosmosDatabase);
    const read = async <T>(container: string): Promise<T[]> => {
      try {
        return (await db.container(container).items.query<T>('SELECT * FROM c').fetchAll()).resources;
      } catch (err) {
        // A catalog that was never recreated after a restart reads as empty: every file then counts as lost.
        if ((err as { code?: number }).code === 404) return [];
        throw err;
      }
    };
    const indexDocs = await read<IngestionDocument>(settings.indexContainer);
    const researchDocs = await read<ResearchDocument & Record<string, unknown>>(settings.researchCatalogContainer);
    const index = new Map<string, { status: string; errorCode?: string; researchSop?: string }>();
    const sources: PipelineSnapshot['sources'] = new Map();
    for (const d of indexDocs) {
      index.set(d.blobName, { status: d.status, errorCode: d.errorCode, researchSop: d.research?.sopInstanceUid });
      if (d.status === 'cataloged' && d.research && d.sourceRank) {
        sources.set(d.blobName, { sop: d.research.sopInstanceUid, rank: d.sourceRank, blob: d.research.blob, study: d.research.studyInstanceUid, series: d.research.seriesInstanceUid });
      }
    }
    const instanceRanks = new Map<string, string>();
    for (const d of researchDocs) if (d.type === 'instance') instanceRanks.set(String(d.sopInstanceUid), String(d.sourceRank));
    const catalog = new Map(researchDocs.map((d) => [`${d.studyInstanceUid}/${d.id}`, stable(d)]));
    const counts = { studies: 0, series: 0, instances: 0 };
    for (const d of researchDocs) {
      if (d.type === 'study') counts.studies += 1;
      else if (d.type === 'series') counts.series += 1;
      else counts.instances += 1;
    }
    return { landing: landing.sort(), index, catalog, researchBlobs, counts, sources, instanceRanks };
  } finally {
    cosmos.dispose();
  }
}

export interface Comparison {
  files: number;
  /** Of which deleted from the landing container after their upload. */
  deleted: number;
  /** Uploaded files missing from the landing container, without an index record, or not in a terminal state. */
  lost: string[];
  /** Files whose terminal state differs from the clean run's; deleted files recorded as anything but deleted. */
  diverged: string[];
  /** Catalog documents and research copies missing, extra or different from the clean run's (ids only). */
  catalogDiff: string[];
}

/** The paths (names only, never values) where two documents differ, a few levels down. */
function differingPaths(a: unknown, b: unknown, prefix = '', depth = 3): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  if (depth === 0 || typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return [prefix || '(value)'];
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].flatMap((k) => differingPaths((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], prefix ? `${prefix}.${k}` : k, depth - 1));
}

/**
 * Compares a run with the clean run of the same files (uploaded, then `deleted` removed again). A
 * deleted file must end recorded as deleted, or never recorded (deleted before its event was
 * handled). Nothing in the result names a source file's content.
 */
export function compareWithClean(uploaded: string[], deleted: ReadonlySet<string>, clean: PipelineSnapshot, run: PipelineSnapshot): Comparison {
  const landing = new Set(run.landing);
  const lost: string[] = [];
  const diverged: string[] = [];
  for (const name of uploaded) {
    const rec = run.index.get(name);
    if (deleted.has(name)) {
      if (rec && !TERMINAL.has(rec.status)) lost.push(`${name}: deleted, left ${rec.status}`);
      else if (landing.has(name)) diverged.push(`${name}: deleted, still in the landing container`);
      else if (rec && rec.status !== 'deleted') diverged.push(`${name}: deleted, recorded ${JSON.stringify(rec)}`);
      continue;
    }
    if (!landing.has(name) || !rec || !TERMINAL.has(rec.status)) {
      lost.push(`${name}: ${!landing.has(name) ? 'not in the landing container' : rec ? `left ${rec.status}` : 'no index record'}`);
      continue;
    }
    const want = clean.index.get(name);
    if (JSON.stringify(rec) !== JSON.stringify(want)) diverged.push(`${name}: ${JSON.stringify(rec)}, clean run ${JSON.stringify(want)}`);
  }
  const catalogDiff: string[] = [];
  // An instance written from several sources comes from the most recently written one (its
  // rank). A fault that delays some uploads can change which that is: then this run must follow
  // the rule with its own ranks, and its instance may differ from the clean run's.
  const rerouted = new Set<string>();
  const cleanWinners = winningSources(clean);
  for (const [sop, winner] of winningSources(run)) {
    if (run.instanceRanks.get(sop) !== winner.rank) catalogDiff.push(`instance ${sop} is not from its most recently written source (${winner.name})`);
    const before = cleanWinners.get(sop);
    if (before && before.name !== winner.name) {
      rerouted.add(`${winner.study}/instance:${sop}`);
      rerouted.add(`${winner.study}/series:${winner.series}`);
      rerouted.add(winner.blob);
    }
  }
  // The series of such an instance counts the same instances; only its statistics (bytes, transfer syntaxes) follow the copy.
  const comparable = (id: string, doc: Record<string, unknown>) => {
    if (!rerouted.has(id)) return doc;
    if (id.includes('/instance:')) return {};
    const { statistics: _ignored, ...rest } = doc;
    return rest;
  };
  for (const [id, doc] of clean.catalog) {
    const other = run.catalog.get(id);
    if (!other) catalogDiff.push(`missing ${id}`);
    else if (JSON.stringify(comparable(id, other)) !== JSON.stringify(comparable(id, doc))) catalogDiff.push(`different ${id} (${differingPaths(doc, other).join(', ')})`);
  }
  for (const id of run.catalog.keys()) if (!clean.catalog.has(id)) catalogDiff.push(`extra ${id}`);
  for (const [name, size] of clean.researchBlobs) {
    if (!run.researchBlobs.has(name)) catalogDiff.push(`research copy missing ${name}`);
    else if (run.researchBlobs.get(name) !== size && !rerouted.has(name)) catalogDiff.push(`research copy different ${name}`);
  }
  for (const name of run.researchBlobs.keys()) if (!clean.researchBlobs.has(name)) catalogDiff.push(`research copy extra ${name}`);
  return { files: uploaded.length, deleted: uploaded.filter((n) => deleted.has(n)).length, lost, diverged, catalogDiff };
}

/** Research instances cataloged from more than one source, each with its highest-ranked source. */
function winningSources(s: PipelineSnapshot): Map<string, SourceOfInstance & { name: string }> {
  const bySop = new Map<string, (SourceOfInstance & { name: string })[]>();
  for (const [name, src] of s.sources) bySop.set(src.sop, [...(bySop.get(src.sop) ?? []), { name, ...src }]);
  const winners = new Map<string, SourceOfInstance & { name: string }>();
  for (const [sop, all] of bySop) {
    if (all.length < 2) continue;
    winners.set(sop, all.reduce((a, b) => (b.rank > a.rank ? b : a)));
  }
  return winners;
}

function faultCounts(p: FaultProxyStats): string {
  return (
    `429 ${p.throttled}, 503 ${p.unavailable}, delayed ${p.delayed} (+${Math.round(p.delayMs / 1000)} s), responses dropped ${p.responsesDropped}, ` +
    `upstream down ${p.upstreamFailed}, refused periods ${p.downPeriods}`
  );
}

/** The one line a scenario prints to the CI log. */
export function summaryLine(scenario: string, c: Comparison, stats: { events: EventSourceStats; proxies: Record<FaultTarget, FaultProxyStats> }, extra: string, ms: number): string {
  return (
    `faults ${scenario}: files ${c.files} (${c.deleted} deleted again), lost ${c.lost.length}, diverged ${c.diverged.length}, catalog differences ${c.catalogDiff.length}; ` +
    `blob faults [${faultCounts(stats.proxies.blob)}]; cosmos faults [${faultCounts(stats.proxies.cosmos)}]; ` +
    `events emitted ${stats.events.emitted}, retried ${stats.events.retried}, dead-lettered ${stats.events.deadLettered}` +
    `${extra ? `; ${extra}` : ''}; ${(ms / 1000).toFixed(1)} s`
  );
}
