/**
 * The backfill as a function (functions/backfill.ts): an operator starts a job over HTTP, and a
 * timer runs one slice of runBackfill per tick, `maxRunMs` long, until the listing is done.
 *
 * The job, its checkpoint and its status are one JSON document (a blob), replaced with If-Match
 * only. A tick first claims the job: it writes a lease (its invocation id and an expiry) with
 * the ETag it read. Of two ticks that read the same document (two instances, a tick that
 * outlived its lease), one write succeeds and the other gets CATALOG_CONFLICT and does nothing,
 * so one runner at a time emits the job's events. Each checkpoint the slice saves is a write
 * with the ETag of the previous one, so a slice that lost the document (a new job was started,
 * a lease taken over) stops at its next checkpoint. Its events in flight are emitted again by
 * the next slice with the same ids; ingestion of a version already done is a no-op.
 *
 * The status holds counts, the source as the operator named it (a container, an ANQ path),
 * and error codes: no blob name, no URL, no message text of a failure.
 */
import { ErrorCodes, isPipelineError, PipelineError } from '../errors';
import type { Generation } from '../ingest/generation';
import type { Telemetry } from '../telemetry/telemetry';
import { type BackfillCheckpoint, type BackfillCheckpointStore, type BackfillEventSink, type BackfillProgress, type IndexLookup, runBackfill, type SourceLister } from './backfill';

/** What to list: a landing container (one of SOURCE_CONTAINERS), or a directory of the ANQ export. */
export type BackfillSource =
  | { kind: 'blob'; container: string; prefix?: string }
  /** `snapshotId` is fixed by the first slice (the newest snapshot then), so every slice lists the same one. */
  | { kind: 'anq'; path: string; snapshotId?: number };

export interface BackfillJobDocument {
  version: 1;
  /** Pseudonymous job id (a UUID), to tell one job from the next. */
  id: string;
  source: BackfillSource;
  /** Events per second at most. */
  ratePerSecond: number;
  requestedAt: string;
  /** The operator who started it (the principal's oid: pseudonymous, as in the access audit). */
  requestedBy: string;
  state: 'pending' | 'running' | 'done';
  checkpoint?: BackfillCheckpoint;
  /** The slice that owns the job until `until` (ISO time); absent between slices. */
  lease?: { owner: string; until: string };
  slices: number;
  lastSliceAt?: string;
  /** The error code of the last slice that failed (a later slice retries from the checkpoint). */
  lastError?: { code: string; at: string };
  completedAt?: string;
}

/** The job document's store: read, and replace only if the ETag is still the one given (absent: only if none exists). */
export interface BackfillJobStore {
  read(): Promise<{ document: BackfillJobDocument; etag: string } | undefined>;
  /** Throws CATALOG_CONFLICT when the stored document is not the one `etag` names. */
  write(document: BackfillJobDocument, etag: string | undefined): Promise<string>;
}

export function isBackfillJobDocument(d: BackfillJobDocument): boolean {
  return d?.version === 1 && typeof d.id === 'string' && (d.source?.kind === 'blob' || d.source?.kind === 'anq');
}

/** The status an operator reads: counts and states, no names. */
export interface BackfillJobStatus {
  id: string;
  source: BackfillSource;
  ratePerSecond: number;
  requestedAt: string;
  state: BackfillJobDocument['state'];
  done: boolean;
  counts: { listed: number; emitted: number; skipped: number; reindexed: number };
  slices: number;
  lastSliceAt?: string;
  lastError?: { code: string; at: string };
  completedAt?: string;
}

export function jobStatus(d: BackfillJobDocument): BackfillJobStatus {
  const c = d.checkpoint?.counts;
  return {
    id: d.id,
    source: d.source,
    ratePerSecond: d.ratePerSecond,
    requestedAt: d.requestedAt,
    state: d.state,
    done: d.state === 'done',
    counts: { listed: c?.listed ?? 0, emitted: c?.emitted ?? 0, skipped: c?.skipped ?? 0, reindexed: c?.reindexed ?? 0 },
    slices: d.slices,
    ...(d.lastSliceAt ? { lastSliceAt: d.lastSliceAt } : {}),
    ...(d.lastError ? { lastError: d.lastError } : {}),
    ...(d.completedAt ? { completedAt: d.completedAt } : {}),
  };
}

/**
 * Starts a job: writes a new document, unless a job is still pending or running (STATE_CONFLICT:
 * one job at a time; its checkpoint would be lost). Throws CATALOG_CONFLICT when the document
 * changed between the read and the write (a slice saved meanwhile): the caller may retry.
 */
export async function startBackfillJob(store: BackfillJobStore, job: Pick<BackfillJobDocument, 'id' | 'source' | 'ratePerSecond' | 'requestedBy'>, now: () => number = Date.now): Promise<BackfillJobDocument> {
  const current = await store.read();
  if (current && current.document.state !== 'done') {
    throw new PipelineError(ErrorCodes.STATE_CONFLICT, 'a backfill job is still running: wait until it is done (GET /api/backfill)');
  }
  const document: BackfillJobDocument = { version: 1, ...job, requestedAt: new Date(now()).toISOString(), state: 'pending', slices: 0 };
  await store.write(document, current?.etag);
  return document;
}

export interface SliceDeps {
  jobs: BackfillJobStore;
  /** The lister of the job's source; for the ANQ export, also the snapshot it lists (fixed in the job). */
  listerFor(source: BackfillSource): Promise<{ lister: SourceLister; source: BackfillSource }>;
  sink: BackfillEventSink;
  index: IndexLookup;
  generation?: Generation;
  telemetry?: Pick<Telemetry, 'trackMetric'>;
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface SliceOptions {
  /** This run's id (the invocation id): the lease's owner. */
  owner: string;
  /** The slice's length; the lease lasts this long plus `leaseMarginMs`. */
  maxRunMs: number;
  leaseMarginMs?: number;
  pageSize?: number;
  batchSize?: number;
  concurrency?: number;
}

export type SliceResult =
  | { ran: false; reason: 'no job' | 'done' | 'leased' | 'lost the claim' }
  | { ran: true; done: boolean; counts: BackfillCheckpoint['counts']; error?: string };

/**
 * The job's checkpoint as runBackfill sees it: read from the claimed document, written back into
 * it with If-Match on the document's latest ETag (so a document replaced meanwhile stops the slice).
 */
class JobCheckpointStore implements BackfillCheckpointStore {
  constructor(
    private readonly jobs: BackfillJobStore,
    public document: BackfillJobDocument,
    public etag: string,
  ) {}

  async read(): Promise<{ checkpoint: BackfillCheckpoint; etag: string } | undefined> {
    return this.document.checkpoint && { checkpoint: this.document.checkpoint, etag: this.etag };
  }

  async write(checkpoint: BackfillCheckpoint): Promise<string> {
    const next = { ...this.document, checkpoint };
    this.etag = await this.jobs.write(next, this.etag);
    this.document = next;
    return this.etag;
  }
}

function codeOf(e: unknown): string {
  return isPipelineError(e) ? e.code : ErrorCodes.INTERNAL;
}

/**
 * One tick: claims the job, runs runBackfill for at most `maxRunMs` from its checkpoint, and
 * records where it got (done: the job is complete). A failure is recorded as its code and
 * rethrown; the next tick resumes from the last checkpoint.
 */
export async function runBackfillSlice(deps: SliceDeps, options: SliceOptions): Promise<SliceResult> {
  const now = deps.now ?? Date.now;
  const iso = () => new Date(now()).toISOString();
  const read = await deps.jobs.read();
  if (!read) return { ran: false, reason: 'no job' };
  if (read.document.state === 'done') return { ran: false, reason: 'done' };
  const lease = read.document.lease;
  if (lease && lease.owner !== options.owner && Date.parse(lease.until) > now()) return { ran: false, reason: 'leased' };

  // The claim: whoever writes first with this ETag runs the slice.
  let claimed: BackfillJobDocument = {
    ...read.document,
    state: 'running',
    lease: { owner: options.owner, until: new Date(now() + options.maxRunMs + (options.leaseMarginMs ?? 60_000)).toISOString() },
  };
  let etag: string;
  try {
    etag = await deps.jobs.write(claimed, read.etag);
  } catch (e) {
    if (isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) return { ran: false, reason: 'lost the claim' };
    throw e;
  }

  const checkpoints = new JobCheckpointStore(deps.jobs, claimed, etag);
  const finish = async (patch: Partial<BackfillJobDocument>) => {
    const { lease: _released, ...rest } = checkpoints.document;
    const next: BackfillJobDocument = { ...rest, slices: rest.slices + 1, lastSliceAt: iso(), ...patch };
    await deps.jobs.write(next, checkpoints.etag);
  };

  const kind = read.document.source.kind;
  const metrics = (p: Pick<BackfillProgress, 'emitted' | 'skipped' | 'reindexed' | 'rate'> & { total?: number }) => {
    // Counts only: no names, no URLs (the CLI's metrics, tools/backfill.ts).
    deps.telemetry?.trackMetric('BackfillDone', p.emitted + p.skipped, { lister: kind });
    deps.telemetry?.trackMetric('BackfillRate', p.rate, { lister: kind });
    deps.telemetry?.trackMetric('BackfillReindexed', p.reindexed, { lister: kind });
    if (p.total !== undefined) deps.telemetry?.trackMetric('BackfillTotal', p.total, { lister: kind });
  };

  let cp: BackfillCheckpoint;
  try {
    const { lister, source } = await deps.listerFor(claimed.source);
    if (JSON.stringify(source) !== JSON.stringify(claimed.source)) {
      claimed = { ...checkpoints.document, source };
      checkpoints.etag = await deps.jobs.write(claimed, checkpoints.etag);
      checkpoints.document = claimed;
    }
    let last = now();
    let progress: BackfillProgress | undefined;
    cp = await runBackfill(
      {
        lister,
        sink: deps.sink,
        checkpoints,
        index: deps.index,
        ...(deps.generation ? { generation: deps.generation } : {}),
        now,
        ...(deps.sleep ? { sleep: deps.sleep } : {}),
        onProgress: (p) => {
          progress = p;
          if (now() - last >= 10_000) {
            last = now();
            metrics(p);
          }
        },
      },
      { maxRunMs: options.maxRunMs, ratePerSecond: claimed.ratePerSecond, pageSize: options.pageSize, batchSize: options.batchSize, concurrency: options.concurrency, countFirst: false },
    );
    if (progress) metrics(progress);
  } catch (e) {
    // Another document replaced ours: it is not ours to write any more.
    if (isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) return { ran: true, done: false, counts: checkpoints.document.checkpoint?.counts ?? { listed: 0, emitted: 0, skipped: 0 }, error: e.code };
    await finish({ lastError: { code: codeOf(e), at: iso() } }).catch(() => undefined);
    throw e;
  }
  await finish(cp.done ? { state: 'done', completedAt: iso() } : {});
  return { ran: true, done: cp.done, counts: cp.counts };
}

/** Events per second a job may ask for, and what it gets when it names none (the command line's default). */
export const MAX_JOB_RATE = 100_000;
export const DEFAULT_JOB_RATE = 200;

/**
 * The body of `POST /api/backfill`: `{ "source": "blob", "container"?, "prefix"?, "rate"? }` or
 * `{ "source": "anq", "path", "snapshot"?, "rate"? }`. The container defaults to the first of
 * SOURCE_CONTAINERS and must be one of them (ingestion ignores others). Throws REQUEST_INVALID
 * naming the bad field.
 */
export function parseBackfillRequest(body: unknown, sourceContainers: readonly string[]): { source: BackfillSource; ratePerSecond: number } {
  const bad = (m: string) => new PipelineError(ErrorCodes.REQUEST_INVALID, m);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('body: must be a JSON object');
  const b = body as Record<string, unknown>;
  const known = new Set(['source', 'container', 'prefix', 'path', 'snapshot', 'rate']);
  const extra = Object.keys(b).find((k) => !known.has(k));
  if (extra !== undefined) throw bad(`body: unknown field (allowed: ${[...known].join(', ')})`);
  const rate = b.rate === undefined ? DEFAULT_JOB_RATE : b.rate;
  if (typeof rate !== 'number' || !Number.isInteger(rate) || rate < 0 || rate > MAX_JOB_RATE) throw bad(`rate: a whole number of events per second from 0 (unpaced) to ${MAX_JOB_RATE}`);
  const kind = b.source ?? 'blob';
  if (kind === 'blob') {
    if (b.path !== undefined || b.snapshot !== undefined) throw bad('path, snapshot: for source "anq" only');
    const container = b.container ?? sourceContainers[0];
    if (typeof container !== 'string' || !sourceContainers.includes(container)) throw bad('container: must be one of SOURCE_CONTAINERS');
    if (b.prefix !== undefined && (typeof b.prefix !== 'string' || b.prefix === '' || b.prefix.length > 1024)) throw bad('prefix: a non-empty blob name prefix');
    return { source: { kind: 'blob', container, ...(b.prefix !== undefined ? { prefix: b.prefix as string } : {}) }, ratePerSecond: rate };
  }
  if (kind === 'anq') {
    if (b.container !== undefined || b.prefix !== undefined) throw bad('container, prefix: for source "blob" only');
    if (typeof b.path !== 'string' || !b.path.startsWith('/') || b.path.length > 4096 || /(^|\/)\.\.?(\/|$)/.test(b.path)) throw bad('path: an absolute file-system path on the cluster without dot segments (for example /replica/dicom/)');
    if (b.snapshot !== undefined && (typeof b.snapshot !== 'number' || !Number.isSafeInteger(b.snapshot) || b.snapshot < 0)) throw bad('snapshot: a snapshot id');
    return { source: { kind: 'anq', path: b.path, ...(b.snapshot !== undefined ? { snapshotId: b.snapshot as number } : {}) }, ratePerSecond: rate };
  }
  throw bad('source: "blob" or "anq"');
}
