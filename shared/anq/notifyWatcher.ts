/**
 * The notify-mode watcher: for replication targets that keep no snapshots, the REST
 * change-notification stream (`GET /v1/files/{ref}/notify?recursive=true`, server-sent events)
 * tells which files changed, and a periodic reconciliation lists the live tree (S3
 * ListObjectsV2) to publish what the stream missed. It publishes the same
 * `VNA.Archive.FileReplicated` / `VNA.Archive.FileDeleted` CloudEvents as the snapshot watcher,
 * without a snapshot: the ingestion reads the live file (ANQ_READ_FROM=head), pinned by its ETag.
 *
 * A notification only marks a file as pending. A pending file is published once settled: no
 * notification for it during `settleMs` (the stream misses nothing while it is registered: every
 * write is notified), then one look (HeadObject) gives the version published. A file the stream
 * did not tell about (found by the reconciliation while still changing, or pending when a stream
 * was lost) is settled when two looks `settleMs` apart agree on its ETag, size and mtime. So a
 * file replication is still writing is published once, when it stops. A file gone at its look
 * is a deletion, if it was published before.
 *
 * The listing state (a blob, written with If-Match) holds, for each file, the version last
 * published, and the reconciliation's position. The state is written after each publish, so a
 * crash between publishing and writing repeats those events, with the same ids, and never
 * skips one. The stream has no replay: what changed while no stream was registered (before the
 * first, after a drop, between two sessions) is found by the reconciliation, which therefore
 * starts as soon as a stream is registered again. It compares each page of the listing with
 * the state: new or changed versions are published, files of the state that fall in the
 * page's key range and are no longer listed are deleted (after a HeadObject confirms it). Its
 * position is checkpointed per page, so a pass interrupted by a crash goes on from there.
 *
 * A session lasts `durationMs` (see functions/anqSnapshotWatcher.ts: a timer starts one per
 * tick; the timer trigger never overlaps runs, so one session at a time holds the stream).
 */
import { createHash } from 'node:crypto';

import { ErrorCodes, isPipelineError, PipelineError } from '../errors';
import { AnqFileEventData, anqSourceUrl, FILE_DELETED, FILE_REPLICATED } from '../events/ingestEvents';
import type { QumuloNotification, QumuloNotifyApi } from './qumuloRest';
import type { ArchiveEventSink, ArchiveFileEvent, WatcherLogger } from './watcher';

/** A live file as the S3 API shows it. */
export interface LiveFile {
  /** Relative to the export (the bucket root). */
  key: string;
  etag: string;
  size: number;
  lastModified: Date;
}

/** The live tree through the cluster's S3 API. */
export interface LiveTree {
  /** The file now, or undefined when there is none. Throws SERVICE_* on faults. Idempotent. */
  head(key: string, options?: { abortSignal?: AbortSignal }): Promise<LiveFile | undefined>;
  /** One page of the files under `prefix` in key order, after `after`. Throws SERVICE_* on faults. Idempotent. */
  listPage(prefix: string, after: string | undefined, options: { limit: number; abortSignal?: AbortSignal }): Promise<{ files: LiveFile[]; lastKey?: string; done: boolean }>;
}

/** The version of a file last published. */
export interface PublishedVersion {
  etag: string;
  size: number;
  mtime: string;
}

export interface ListingState {
  version: 1;
  /** Key → the version last published as replicated (deleted files are removed). */
  files: Record<string, PublishedVersion>;
  /** A reconciliation pass under way: the keys up to `after` are done (none yet when undefined). */
  reconcile?: { after?: string };
  /** When the last pass ended. */
  lastReconciledAt?: string;
}

/** The listing state document, written only if it is still as read. */
export interface ListingStateStore {
  /** The state and its version, or undefined before the first session. Throws SERVICE_* on faults. */
  read(): Promise<{ document: ListingState; etag: string } | undefined>;
  /** Writes if the version is still `expectedEtag` (undefined: must not exist). Throws CATALOG_CONFLICT otherwise. */
  write(document: ListingState, expectedEtag: string | undefined): Promise<string>;
}

export interface NotifyWatcherConfig {
  cluster: string;
  exportPath: string;
  /** Relative prefix (a directory, ending with "/"), or "" for the whole export. */
  prefix: string;
  /** A file is settled when two looks this far apart agree. */
  settleMs: number;
  /** A reconciliation pass at least this often (and after every registration of the stream). */
  reconcileMs: number;
  /** Files per page of the reconciliation's listing. */
  pageSize?: number;
  /** Events per publish call. */
  publishBatch?: number;
}

export interface NotifyWatcherDeps {
  notify: QumuloNotifyApi;
  tree: LiveTree;
  sink: ArchiveEventSink;
  state: ListingStateStore;
  config: NotifyWatcherConfig;
  log: WatcherLogger;
  now?: () => number;
  /** Called before each list of notifications is handled (tests hold the consumer back with it). */
  beforeNotifications?: () => Promise<void>;
}

export interface NotifySessionResult {
  notifications: number;
  replicated: number;
  deleted: number;
  /** Of replicated and deleted, the events of files found by the reconciliation rather than told by the stream. */
  reconciled: number;
  /** Reconciliation passes finished. */
  passes: number;
  /** Streams that ended (dropped by the cluster or cut) and were registered again. */
  streamsLost: number;
  /** False when another session owns the state (this one stopped). */
  owner: boolean;
}

/** The notification types that can change what a file under the watched directory holds. */
export const WATCHED_TYPES = [
  'child_file_added', 'child_file_removed', 'child_file_moved_from', 'child_file_moved_to',
  'child_dir_removed', 'child_dir_moved_from', 'child_dir_moved_to',
  'child_data_written', 'child_size_changed', 'child_mtime_changed',
];

/** A stable id per version: the stream and the reconciliation publishing the same version give the same id. */
export function liveEventId(cluster: string, op: 'REPLICATED' | 'DELETED', path: string, etag: string): string {
  return createHash('sha256').update(`${cluster}\0live\0${op}\0${path}\0${etag}`).digest('hex').slice(0, 32);
}

function versionOf(f: LiveFile): PublishedVersion {
  return { etag: f.etag, size: f.size, mtime: f.lastModified.toISOString() };
}

function sameVersion(a: PublishedVersion | undefined, b: PublishedVersion | undefined): boolean {
  return !!a && !!b && a.etag === b.etag && a.size === b.size && a.mtime === b.mtime;
}

/** S3 orders keys by their UTF-8 bytes. */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });

interface Pending {
  /** When to look next. */
  due: number;
  /** The last look. */
  seen?: PublishedVersion;
  /** Quiet on a registered stream since its last notification: one look settles it. */
  quiet: boolean;
  /** Found by the reconciliation, not told by the stream (counted as reconciled). */
  listed: boolean;
}

/**
 * One session of the notify-mode watcher: registers the stream, reconciles, publishes settled
 * changes, until `durationMs` passes or `abortSignal` fires; pending files left unsettled are
 * found by the next session's reconciliation. Throws SERVICE_* when the state cannot be read
 * or written (the next session goes on from the stored state).
 */
export async function runNotifySession(deps: NotifyWatcherDeps, options: { durationMs: number; abortSignal?: AbortSignal }): Promise<NotifySessionResult> {
  const { config, log, tree, sink } = deps;
  const now = deps.now ?? Date.now;
  const result: NotifySessionResult = { notifications: 0, replicated: 0, deleted: 0, reconciled: 0, passes: 0, streamsLost: 0, owner: true };
  const stop = new AbortController();
  const endTimer = setTimeout(() => stop.abort(new Error('session over')), options.durationMs);
  const onAbort = () => stop.abort(options.abortSignal?.reason);
  options.abortSignal?.addEventListener('abort', onAbort);
  const signal = stop.signal;

  const root = config.exportPath === '/' ? '' : config.exportPath.replace(/\/+$/, '');
  const watchDir = `${root}/${config.prefix}`;
  const pathOf = (key: string) => `${root}/${key}`;

  const stored = await deps.state.read();
  let state: ListingState = stored?.document ?? { version: 1, files: {} };
  let etag = stored?.etag;
  const pending = new Map<string, Pending>();
  let registered = false;
  let reconcileWanted = true;
  let fatal: unknown;

  // One writer of the state at a time: the settling and the reconciliation take turns.
  let turn: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = turn.then(fn);
    turn = run.catch(() => undefined);
    return run;
  };
  const save = async () => {
    try {
      etag = await deps.state.write(state, etag);
    } catch (e) {
      if (isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) {
        log.warn('ANQ notify watcher: the listing state was written by another session; this one stops');
        result.owner = false;
        stop.abort(e);
      }
      throw e;
    }
  };
  if (!stored) await save();

  const replicatedEvent = (f: LiveFile): ArchiveFileEvent => {
    const path = pathOf(f.key);
    const data: AnqFileEventData = { url: anqSourceUrl(config.cluster, path), path, size: f.size, mtime: f.lastModified.toISOString(), etag: f.etag };
    return { id: liveEventId(config.cluster, 'REPLICATED', path, f.etag), type: FILE_REPLICATED, source: `anq://${config.cluster}`, subject: path, time: new Date(now()).toISOString(), data };
  };
  const deletedEvent = (key: string, last: PublishedVersion): ArchiveFileEvent => {
    const path = pathOf(key);
    const data: AnqFileEventData = { url: anqSourceUrl(config.cluster, path), path, size: last.size, mtime: last.mtime, etag: last.etag };
    return { id: liveEventId(config.cluster, 'DELETED', path, last.etag), type: FILE_DELETED, source: `anq://${config.cluster}`, subject: path, time: new Date(now()).toISOString(), data };
  };
  const publish = async (events: ArchiveFileEvent[], byReconciliation: (e: ArchiveFileEvent) => boolean) => {
    const batch = config.publishBatch ?? 100;
    for (let i = 0; i < events.length; i += batch) await sink.publish(events.slice(i, i + batch));
    for (const e of events) {
      if (e.type === FILE_DELETED) result.deleted++;
      else result.replicated++;
      if (byReconciliation(e)) result.reconciled++;
    }
  };

  /** `notified`: the stream told about it (the settle time runs from now); otherwise look at once, then twice. */
  const markPending = (key: string, notified: boolean) => {
    if (key.startsWith('.snapshot/') || !key.startsWith(config.prefix) || key.endsWith('/')) return;
    const p = pending.get(key);
    if (notified) {
      // Another change: a full settle time from now, with no further notification, settles it.
      if (p) {
        p.due = now() + config.settleMs;
        p.quiet = true;
        p.listed = false;
      } else pending.set(key, { due: now() + config.settleMs, quiet: true, listed: false });
    } else if (!p) pending.set(key, { due: now(), quiet: false, listed: true });
  };

  const listUnder = async (dirKey: string): Promise<string[]> => {
    const keys: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await tree.listPage(dirKey, after, { limit: config.pageSize ?? 1000, abortSignal: signal });
      keys.push(...page.files.map((f) => f.key));
      if (page.done || page.lastKey === undefined) return keys;
      after = page.lastKey;
    }
  };

  const onNotifications = async (list: QumuloNotification[]) => {
    for (const n of list) {
      result.notifications++;
      if (n.stream_name) continue; // an alternate data stream is not the file's bytes
      const key = `${config.prefix}${n.path.replace(/^\/+/, '').replace(/\/+$/, '')}`;
      if (n.type === 'child_dir_removed' || n.type === 'child_dir_moved_from') {
        // The files of a directory that went away are not notified one by one.
        for (const known of Object.keys(state.files)) if (known.startsWith(`${key}/`)) markPending(known, true);
      } else if (n.type === 'child_dir_moved_to') {
        for (const k of await listUnder(`${key}/`)) markPending(k, true);
      } else if (!n.type.startsWith('child_dir_')) markPending(key, true);
    }
  };

  /** Looks at the pending files that are due and publishes the settled ones. */
  const settleDue = () =>
    exclusive(async () => {
      const t = now();
      const due = [...pending].filter(([, p]) => p.due <= t).slice(0, 500);
      if (due.length === 0) return;
      const looks = await Promise.all(due.map(async ([key]) => [key, await tree.head(key, { abortSignal: signal })] as const));
      const events: ArchiveFileEvent[] = [];
      const listed = new Set<string>();
      for (const [key, file] of looks) {
        const p = pending.get(key);
        if (!p) continue;
        if (p.listed) listed.add(pathOf(key));
        if (!file) {
          pending.delete(key);
          const last = state.files[key];
          if (last) events.push(deletedEvent(key, last));
          continue;
        }
        const seen = versionOf(file);
        if (!p.quiet && !sameVersion(p.seen, seen)) {
          p.seen = seen;
          p.due = now() + config.settleMs;
          continue;
        }
        pending.delete(key);
        if (!sameVersion(state.files[key], seen)) events.push(replicatedEvent(file));
      }
      if (events.length === 0) return;
      await publish(events, (e) => listed.has(e.subject));
      for (const e of events) {
        const key = e.subject.slice(root.length + 1);
        if (e.type === FILE_DELETED) delete state.files[key];
        else state.files[key] = { etag: e.data.etag ?? '', size: e.data.size ?? 0, mtime: e.data.mtime ?? '' };
      }
      await save();
    });

  /** One pass of the reconciliation, page by page from its checkpoint. */
  const reconcilePass = async () => {
    reconcileWanted = false;
    const known = Object.keys(state.files).sort(compareKeys);
    let k = 0;
    for (;;) {
      if (signal.aborted) return;
      const done = await exclusive(async () => {
        const after = state.reconcile?.after;
        const page = await tree.listPage(config.prefix, after, { limit: config.pageSize ?? 1000, abortSignal: signal });
        const hi = page.done || page.lastKey === undefined ? undefined : page.lastKey;
        const listed = new Set(page.files.map((f) => f.key));
        const events: ArchiveFileEvent[] = [];
        const t = now();
        for (const f of page.files) {
          if (pending.has(f.key)) continue; // the stream has it; it settles there
          // Still being written: settled like a notified file.
          if (t - f.lastModified.getTime() < config.settleMs) {
            markPending(f.key, false);
            continue;
          }
          if (!sameVersion(state.files[f.key], versionOf(f))) events.push(replicatedEvent(f));
        }
        while (k < known.length && after !== undefined && compareKeys(known[k] as string, after) <= 0) k++;
        for (; k < known.length && (hi === undefined || compareKeys(known[k] as string, hi) <= 0); k++) {
          const key = known[k] as string;
          const last = state.files[key];
          if (!last || listed.has(key) || pending.has(key)) continue;
          // Listed as gone: confirmed, since it may have come back since the page was listed.
          if (await tree.head(key, { abortSignal: signal })) markPending(key, false);
          else events.push(deletedEvent(key, last));
        }
        await publish(events, () => true);
        for (const e of events) {
          const key = e.subject.slice(root.length + 1);
          if (e.type === FILE_DELETED) delete state.files[key];
          else state.files[key] = { etag: e.data.etag ?? '', size: e.data.size ?? 0, mtime: e.data.mtime ?? '' };
        }
        if (hi === undefined) {
          const { reconcile: _done, ...rest } = state;
          state = { ...rest, lastReconciledAt: new Date(now()).toISOString() };
        } else state = { ...state, reconcile: { after: hi } };
        await save();
        return hi === undefined;
      });
      if (done) {
        result.passes++;
        return;
      }
    }
  };

  const guard = async (loop: () => Promise<void>) => {
    try {
      await loop();
    } catch (e) {
      if (signal.aborted && !fatal) return;
      fatal ??= e;
      stop.abort(e);
    }
  };

  const streamLoop = async () => {
    let backoff = 200;
    while (!signal.aborted) {
      try {
        for await (const item of deps.notify.notifications(watchDir, { filter: WATCHED_TYPES, abortSignal: signal })) {
          if (item.kind === 'registered') {
            // Whatever changed before this registration is only found by listing.
            registered = true;
            reconcileWanted = true;
            backoff = 200;
            continue;
          }
          await deps.beforeNotifications?.();
          await onNotifications(item.notifications);
        }
      } catch (e) {
        if (signal.aborted) return;
        if (isPipelineError(e) && (e.code === ErrorCodes.UNAUTHENTICATED || e.code === ErrorCodes.FORBIDDEN || e.code === ErrorCodes.NOT_FOUND || e.code === ErrorCodes.INTERNAL)) throw e;
        registered = false;
        // What was quiet on the lost stream may have changed unseen since: two looks settle it now.
        for (const p of pending.values()) p.quiet = false;
        result.streamsLost++;
        log.warn(`ANQ notify watcher: the notification stream ended (${isPipelineError(e) ? e.code : 'error'}); registering again, then reconciling`);
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, 10_000);
      }
    }
  };
  const settleLoop = async () => {
    while (!signal.aborted) {
      await sleep(Math.max(10, Math.floor(config.settleMs / 4)), signal);
      if (!signal.aborted) await settleDue();
    }
  };
  const reconcileLoop = async () => {
    while (!signal.aborted) {
      const last = state.lastReconciledAt ? Date.parse(state.lastReconciledAt) : 0;
      if (registered && (reconcileWanted || state.reconcile || now() - last >= config.reconcileMs)) await reconcilePass();
      else await sleep(Math.max(10, Math.floor(config.settleMs / 4)), signal);
    }
  };

  try {
    await Promise.all([guard(streamLoop), guard(settleLoop), guard(reconcileLoop)]);
  } finally {
    clearTimeout(endTimer);
    options.abortSignal?.removeEventListener('abort', onAbort);
  }
  if (fatal && result.owner) throw fatal instanceof PipelineError ? fatal : new PipelineError(ErrorCodes.INTERNAL, 'ANQ notify watcher failed', { cause: fatal });
  return result;
}
