/**
 * The snapshot-diff watcher: from the ANQ replication target's snapshots to one CloudEvent per
 * file created, modified or deleted under the configured export and prefix.
 *
 * Each run lists the snapshots, and diffs each new one against the last one processed with
 * Qumulo's tree diff (`GET /v2/snapshots/{newer}/changes-since/{older}`, Qumulo REST API Guide,
 * snapshots/v2_snapshots_newer_id_changes-since_older_id.html), page by page. For every file in
 * a page it publishes `VNA.Archive.FileReplicated` (CREATE, MODIFY) or `VNA.Archive.FileDeleted`
 * (DELETE) with the path, size, mtime and snapshot id, then writes the checkpoint (the last
 * snapshot diffed and the page reached within the current diff) with a conditional write.
 *
 * Publishing comes before checkpointing: a crash between the two repeats that page on the next
 * run (same event ids) and never skips one. A repeat is harmless, as the ingestion is
 * level-triggered and idempotent. A conditional write that fails means another run moved the
 * checkpoint: this run stops rather than fight it.
 *
 * Backfill: the files already there in the snapshot the watcher starts from are in no diff.
 * With `backfill` on, the first run records that snapshot as the one to backfill, and the
 * runs publish `VNA.Archive.FileReplicated` for every file of it under the export and prefix
 * (listed page by page in key order, through the S3 API's ListObjectsV2 of its `.snapshot`
 * directory), checkpointing the last key after each page, before any diff: a crash mid-backfill
 * resumes after the last page checkpointed (that page may be published twice), never from the
 * start. Diffing then goes on from that snapshot.
 */
import { createHash } from 'node:crypto';

import { ErrorCodes, isPipelineError, PipelineError } from '../errors';
import { AnqFileEventData, anqSourceUrl, FILE_DELETED, FILE_REPLICATED } from '../events/ingestEvents';
import type { QumuloApi, QumuloSnapshot, TreeDiffEntry } from './qumuloRest';

export interface ArchiveFileEvent {
  /** Derived from the cluster, snapshot, operation and path: a repeated page repeats the ids. */
  id: string;
  type: typeof FILE_REPLICATED | typeof FILE_DELETED;
  /** `anq://<cluster>`. */
  source: string;
  /** The file-system path, for Event Grid subject filters. */
  subject: string;
  /** The snapshot's creation time. */
  time: string;
  data: AnqFileEventData;
}

/** Where the watcher's events go (an Event Grid topic in Azure). */
export interface ArchiveEventSink {
  /** Publishes all of them or throws (SERVICE_* when the topic cannot take them). Not idempotent: a retry may deliver twice. */
  publish(events: ArchiveFileEvent[]): Promise<void>;
}

export interface WatcherCheckpoint {
  version: 1;
  /** The last snapshot fully diffed (every change up to it published). */
  lastSnapshotId: number;
  /** A diff not yet finished: its snapshots and the `after` key of the next page to read. */
  inProgress?: { olderId: number; newerId: number; after: string };
  /**
   * A backfill not yet finished (see backfillPage): every file of snapshot `snapshotId` (the
   * one the watcher started from) whose key sorts after `after` is still to be published.
   */
  backfill?: { snapshotId: number; after?: string };
}

/** The checkpoint document, written only if it is still as read. */
export interface CheckpointStore {
  /** The checkpoint and its version, or undefined before the first run. Throws SERVICE_* on faults. */
  read(): Promise<{ checkpoint: WatcherCheckpoint; etag: string } | undefined>;
  /**
   * Writes the checkpoint if its version is still `expectedEtag` (undefined: it must not exist
   * yet) and returns the new version. Throws CATALOG_CONFLICT when another run wrote it meanwhile.
   */
  write(checkpoint: WatcherCheckpoint, expectedEtag: string | undefined): Promise<string>;
}

/** A file of a snapshot, as the backfill lists it. */
export interface SnapshotFile {
  /** The path relative to the export (the bucket root). */
  key: string;
  size: number;
  lastModified: Date;
  /** The S3 ETag as listed (the version the index records): lets a backfill skip what is done. */
  etag?: string;
}

/** Lists the files of a snapshot, for the backfill. */
export interface SnapshotFileLister {
  /**
   * One page of the files under `prefix` (relative to the export) as of a snapshot, in key
   * order, after the key `after` (from the start when undefined). `lastKey` is where the next
   * page starts (directories included); `done` when nothing follows. Throws SERVICE_* on
   * faults. Idempotent.
   */
  listFiles(
    snapshot: { id: number; name: string },
    prefix: string,
    after: string | undefined,
    options: { limit: number; abortSignal?: AbortSignal },
  ): Promise<{ files: SnapshotFile[]; lastKey?: string; done: boolean }>;
}

export interface WatcherConfig {
  cluster: string;
  /** Absolute file-system path of the export (the bucket root), "/" for the root. */
  exportPath: string;
  /** Relative prefix (a directory, ending with "/"), or "" for the whole export. */
  prefix: string;
  /** Only snapshots of this directory are diffed (the export's, or an ancestor's file id); undefined: all. */
  snapshotSourceIds?: string[];
  /** On the first run: diff from the oldest kept snapshot (its files count as already there), or start at the newest. */
  startFrom: 'oldest' | 'latest';
  /** Publish the files already in the snapshot the watcher starts from (needs WatcherDeps.files). */
  backfill?: boolean;
  /** Entries asked for per page of the tree diff (and files per page of the backfill). */
  pageSize?: number;
  /** Events per publish call (Event Grid takes up to 1 MB per request). */
  publishBatch?: number;
  /** Attribute reads in flight at once. */
  attributeConcurrency?: number;
  /** Stop taking new pages after this long; the next run goes on from the checkpoint. */
  maxRunMs?: number;
}

export interface WatcherLogger {
  info(message: string): void;
  warn(message: string): void;
}

export interface WatcherDeps {
  api: QumuloApi;
  sink: ArchiveEventSink;
  checkpoints: CheckpointStore;
  /** The snapshot's files, for the backfill (required when config.backfill is on). */
  files?: SnapshotFileLister;
  config: WatcherConfig;
  log: WatcherLogger;
  now?: () => number;
}

export interface WatchResult {
  /** Diffs finished in this run. */
  snapshotsDiffed: number;
  pages: number;
  replicated: number;
  deleted: number;
  /** Of `replicated`, the files published by the backfill. */
  backfilled: number;
  /** The checkpoint's last snapshot when the run ended. */
  lastSnapshotId?: number;
  /** True when the run ended before the newest snapshot (time budget), to go on next time. */
  stoppedEarly: boolean;
}

/** A stable id for the event of one change: the same page published twice carries the same ids. */
export function archiveEventId(cluster: string, snapshotId: number, op: string, path: string): string {
  return createHash('sha256').update(`${cluster}\0${snapshotId}\0${op}\0${path}`).digest('hex').slice(0, 32);
}

function exportRoot(config: Pick<WatcherConfig, 'exportPath'>): string {
  return config.exportPath === '/' ? '' : config.exportPath.replace(/\/+$/, '');
}

function inScope(config: WatcherConfig, path: string): boolean {
  if (path.endsWith('/')) return false;
  return path.startsWith(`${exportRoot(config)}/${config.prefix}`);
}

/**
 * The event of a file found by the backfill: replicated as of the snapshot it was listed in.
 * Also what `npm run backfill -- --anq` emits (shared/backfill/anqLister.ts); `op` names a
 * re-index there, so that its id differs from the first ingestion's.
 */
export function snapshotFileEvent(config: Pick<WatcherConfig, 'cluster' | 'exportPath'>, snapshot: Pick<QumuloSnapshot, 'id' | 'name' | 'timestamp'>, file: SnapshotFile, op = 'BACKFILL'): ArchiveFileEvent {
  const path = `${exportRoot(config)}/${file.key}`;
  return {
    id: archiveEventId(config.cluster, snapshot.id, op, path),
    type: FILE_REPLICATED,
    source: `anq://${config.cluster}`,
    subject: path,
    time: snapshot.timestamp,
    data: { url: anqSourceUrl(config.cluster, path), path, size: file.size, mtime: file.lastModified.toISOString(), snapshotId: snapshot.id, snapshotName: snapshot.name },
  };
}

async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** The events of one page of a tree diff (files in scope only), with their sizes and times. */
async function eventsOf(deps: WatcherDeps, entries: TreeDiffEntry[], older: QumuloSnapshot | undefined, newer: QumuloSnapshot): Promise<ArchiveFileEvent[]> {
  const { config, api } = deps;
  const files = entries.filter((e) => inScope(config, e.path));
  return mapLimited(files, config.attributeConcurrency ?? 16, async (entry) => {
    const deleted = entry.op === 'DELETE';
    // A deletion describes the version that went away (as of the older snapshot), when it still can.
    const attrs = deleted ? (older ? await api.attributes(entry.path, older.id) : undefined) : await api.attributes(entry.path, newer.id);
    const size = attrs ? Number(attrs.size) : null;
    const data: AnqFileEventData = {
      url: anqSourceUrl(config.cluster, entry.path),
      path: entry.path,
      size: size !== null && Number.isFinite(size) ? size : null,
      mtime: attrs?.modification_time ?? null,
      snapshotId: newer.id,
      snapshotName: newer.name,
    };
    return {
      id: archiveEventId(config.cluster, newer.id, entry.op, entry.path),
      type: deleted ? FILE_DELETED : FILE_REPLICATED,
      source: `anq://${config.cluster}`,
      subject: entry.path,
      time: newer.timestamp,
      data,
    };
  });
}

/**
 * One run of the watcher: diffs every snapshot newer than the checkpoint, publishing and
 * checkpointing page by page. Throws SERVICE_* (the timer retries on its next tick, from the
 * checkpoint); returns early on CATALOG_CONFLICT (another run owns the checkpoint).
 */
export async function watchSnapshots(deps: WatcherDeps, options: { abortSignal?: AbortSignal } = {}): Promise<WatchResult> {
  const { api, sink, checkpoints, config, log } = deps;
  const now = deps.now ?? Date.now;
  const started = now();
  const result: WatchResult = { snapshotsDiffed: 0, pages: 0, replicated: 0, deleted: 0, backfilled: 0, stoppedEarly: false };
  if (config.backfill && !deps.files) throw new PipelineError(ErrorCodes.CONFIG_INVALID, 'ANQ watcher: the backfill needs a lister of snapshot files');
  const outOfTime = () => now() - started > (config.maxRunMs ?? Number.POSITIVE_INFINITY) || options.abortSignal?.aborted === true;
  const publish = async (events: ArchiveFileEvent[]) => {
    const batch = config.publishBatch ?? 100;
    for (let i = 0; i < events.length; i += batch) await sink.publish(events.slice(i, i + batch));
  };

  const covers = (s: QumuloSnapshot) => !config.snapshotSourceIds || config.snapshotSourceIds.includes(s.source_file_id);
  const snapshots = (await api.listSnapshots({ abortSignal: options.abortSignal })).filter((s) => covers(s) && !s.in_delete).sort((a, b) => a.id - b.id);

  const stored = await checkpoints.read();
  let etag = stored?.etag;
  let checkpoint = stored?.checkpoint;
  if (!checkpoint) {
    const base = config.startFrom === 'latest' ? snapshots.at(-1) : snapshots[0];
    if (!base) {
      log.info('ANQ watcher: no snapshot yet');
      return result;
    }
    checkpoint = { version: 1, lastSnapshotId: base.id, ...(config.backfill ? { backfill: { snapshotId: base.id } } : {}) };
    try {
      etag = await checkpoints.write(checkpoint, undefined);
    } catch (e) {
      if (isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) return result;
      throw e;
    }
    log.info(`ANQ watcher: starting from snapshot ${base.id}${config.backfill ? ', its files first (backfill)' : ''}`);
  }
  result.lastSnapshotId = checkpoint.lastSnapshotId;

  const save = async (next: WatcherCheckpoint): Promise<boolean> => {
    try {
      etag = await checkpoints.write(next, etag);
      checkpoint = next;
      return true;
    } catch (e) {
      if (isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) {
        log.warn('ANQ watcher: the checkpoint was moved by another run; this run stops');
        return false;
      }
      throw e;
    }
  };

  // The backfill, page by page, before any diff.
  for (;;) {
    const fill = checkpoint.backfill;
    if (!fill) break;
    const snapshot = snapshots.find((s) => s.id === fill.snapshotId);
    if (!snapshot) {
      // It expired before the backfill was done: the next kept one is backfilled from the start
      // (files passed already may have changed since), and the diffs go on from it.
      const next = snapshots.find((s) => s.id > fill.snapshotId) ?? snapshots.at(-1);
      if (!next) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, `ANQ watcher: snapshot ${fill.snapshotId} expired mid-backfill and no snapshot is kept to backfill from`);
      log.warn(`ANQ watcher: snapshot ${fill.snapshotId} expired mid-backfill; backfilling snapshot ${next.id} from the start`);
      if (!(await save({ version: 1, lastSnapshotId: next.id, backfill: { snapshotId: next.id } }))) return result;
      continue;
    }
    if (outOfTime()) {
      result.stoppedEarly = true;
      return result;
    }
    const page = await (deps.files as SnapshotFileLister).listFiles(snapshot, config.prefix, fill.after, { limit: config.pageSize ?? 1000, abortSignal: options.abortSignal });
    const events = page.files.map((f) => snapshotFileEvent(config, snapshot, f)).filter((e) => inScope(config, e.data.path));
    await publish(events);
    result.pages++;
    result.replicated += events.length;
    result.backfilled += events.length;
    const { backfill: _done, ...rest } = checkpoint;
    const next: WatcherCheckpoint = page.done || page.lastKey === undefined ? rest : { ...rest, backfill: { snapshotId: snapshot.id, after: page.lastKey } };
    if (!(await save(next))) return result;
    if (!next.backfill) log.info(`ANQ watcher: backfill of snapshot ${snapshot.id} done`);
  }

  for (;;) {
    const current: WatcherCheckpoint = checkpoint;
    const newer = current.inProgress
      ? snapshots.find((s) => s.id === current.inProgress?.newerId)
      : snapshots.find((s) => s.id > current.lastSnapshotId);
    if (!newer) {
      if (current.inProgress) {
        // The snapshot being diffed went away: start over from the last one finished.
        log.warn(`ANQ watcher: snapshot ${current.inProgress.newerId} is gone before its diff was finished; diffing on from ${current.lastSnapshotId}`);
        if (!(await save({ version: 1, lastSnapshotId: current.lastSnapshotId }))) return result;
        continue;
      }
      return result;
    }
    // The older side is the last snapshot finished. If it has expired meanwhile, the newest one
    // older than `newer` stands in: its diff holds every change since the expired one too (some
    // repeated, none skipped).
    let olderId = current.inProgress?.olderId ?? current.lastSnapshotId;
    let older = snapshots.find((s) => s.id === olderId);
    if (!older) {
      older = snapshots.filter((s) => s.id < newer.id).at(-1);
      if (!older) {
        throw new PipelineError(
          ErrorCodes.SERVICE_UNAVAILABLE,
          `ANQ watcher: snapshot ${olderId} expired and no older snapshot than ${newer.id} is kept to diff against; keep snapshots longer than the watcher's interval`,
        );
      }
      log.warn(`ANQ watcher: snapshot ${olderId} expired; diffing ${newer.id} against ${older.id}`);
      olderId = older.id;
      if (current.inProgress) {
        if (!(await save({ version: 1, lastSnapshotId: current.lastSnapshotId }))) return result;
      }
    }
    let after = current.inProgress && current.inProgress.olderId === olderId ? current.inProgress.after : undefined;

    for (;;) {
      if (outOfTime()) {
        result.stoppedEarly = true;
        return result;
      }
      let page;
      try {
        page = await api.changesSince(newer.id, olderId, after, { limit: config.pageSize ?? 1000, abortSignal: options.abortSignal });
      } catch (e) {
        // One of the two went away between the listing and the diff: the next run lists again.
        if (isPipelineError(e, ErrorCodes.NOT_FOUND)) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, `ANQ watcher: snapshot ${newer.id} or ${olderId} went away during the run`, { cause: e });
        throw e;
      }
      const events = await eventsOf(deps, page.entries, older, newer);
      await publish(events);
      result.pages++;
      for (const e of events) {
        if (e.type === FILE_DELETED) result.deleted++;
        else result.replicated++;
      }
      const next: WatcherCheckpoint = page.after !== undefined
        ? { version: 1, lastSnapshotId: current.lastSnapshotId, inProgress: { olderId, newerId: newer.id, after: page.after } }
        : { version: 1, lastSnapshotId: newer.id };
      if (!(await save(next))) return result;
      if (page.after === undefined) break;
      after = page.after;
    }
    result.snapshotsDiffed++;
    result.lastSnapshotId = newer.id;
  }
}
