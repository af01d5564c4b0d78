/**
 * The watcher's dependencies from the settings, built once per process: the REST client, the
 * Event Grid sink, the blob checkpoint, the S3 lister of the backfill, and the ids of the directories whose snapshots cover
 * the export (the export itself and its ancestors, read once through the attributes resource).
 */
import { loadAnqSettings, loadAnqWatcherSettings } from '../config/anqSettings';
import { ErrorCodes, PipelineError } from '../errors';
import { anqS3Client } from '../storage/anqSourceStore';
import type { NotifyWatcherDeps } from './notifyWatcher';
import { coveringSnapshotSources, QumuloNotifyClient, QumuloRestClient } from './qumuloRest';
import { WatcherDeps, WatcherLogger } from './watcher';
import { BlobCheckpointStore, BlobListingStateStore, EventGridArchiveSink, S3LiveTree, S3SnapshotFileLister } from './watcherAdapters';

let cached: Promise<Omit<WatcherDeps, 'log'> | undefined> | undefined;

/** The watcher's dependencies, or undefined when the ANQ source is off. Throws CONFIG_INVALID on bad settings. */
export function watcherDeps(log: WatcherLogger, env: Record<string, string | undefined> = process.env): Promise<WatcherDeps | undefined> {
  cached ??= (async () => {
    const anq = loadAnqSettings(env);
    if (!anq) return undefined;
    if (!anq.rest) throw new PipelineError(ErrorCodes.CONFIG_INVALID, 'invalid configuration: the ANQ watcher needs ANQ_REST_ENDPOINT and ANQ_REST_TOKEN');
    const watcher = loadAnqWatcherSettings(env);
    const api = new QumuloRestClient(anq.rest.endpoint, anq.rest.token);
    return {
      api,
      sink: new EventGridArchiveSink(watcher.topic),
      checkpoints: BlobCheckpointStore.fromSettings(watcher.checkpoint),
      ...(watcher.backfill ? { files: new S3SnapshotFileLister(anqS3Client(anq.s3), anq.s3.bucket) } : {}),
      config: {
        cluster: anq.cluster,
        exportPath: anq.exportPath,
        prefix: anq.prefix,
        snapshotSourceIds: await coveringSnapshotSources(api, anq),
        startFrom: watcher.startFrom,
        backfill: watcher.backfill,
        maxRunMs: watcher.maxRunMs,
      },
    };
  })();
  // A failed start (the cluster unreachable) is tried again on the next tick.
  cached.catch(() => (cached = undefined));
  return cached.then((deps) => deps && { ...deps, log });
}

/** For tests that change the environment. */
export function resetWatcherDepsForTests(): void {
  cached = undefined;
  cachedNotify = undefined;
}

/** The watcher's mode and, in notify mode, its dependencies and session length. */
export type WatcherRun =
  | { mode: 'off' }
  | { mode: 'snapshots'; deps: WatcherDeps }
  | { mode: 'notify'; deps: NotifyWatcherDeps; sessionMs: number };

let cachedNotify: Promise<Omit<NotifyWatcherDeps, 'log'> & { sessionMs: number }> | undefined;

/** What the timer runs (ANQ_WATCH_MODE). Throws CONFIG_INVALID on bad settings. */
export async function watcherRun(log: WatcherLogger, env: Record<string, string | undefined> = process.env): Promise<WatcherRun> {
  const anq = loadAnqSettings(env);
  if (!anq) return { mode: 'off' };
  const watcher = loadAnqWatcherSettings(env);
  if (watcher.mode === 'snapshots') {
    const deps = await watcherDeps(log, env);
    return deps ? { mode: 'snapshots', deps } : { mode: 'off' };
  }
  cachedNotify ??= (async () => {
    if (!anq.rest) throw new PipelineError(ErrorCodes.CONFIG_INVALID, 'invalid configuration: the ANQ notify watcher needs ANQ_REST_ENDPOINT and ANQ_REST_TOKEN');
    return {
      notify: new QumuloNotifyClient(anq.rest.endpoint, anq.rest.token),
      tree: new S3LiveTree(anqS3Client(anq.s3), anq.s3.bucket),
      sink: new EventGridArchiveSink(watcher.topic),
      state: BlobListingStateStore.fromSettings(watcher.checkpoint, watcher.notify.stateBlobName),
      config: { cluster: anq.cluster, exportPath: anq.exportPath, prefix: anq.prefix, settleMs: watcher.notify.settleMs, reconcileMs: watcher.notify.reconcileMs },
      sessionMs: watcher.maxRunMs,
    };
  })();
  cachedNotify.catch(() => (cachedNotify = undefined));
  const { sessionMs, ...deps } = await cachedNotify;
  return { mode: 'notify', deps: { ...deps, log }, sessionMs };
}
