/**
 * The backfill's lister of an ANQ export (`npm run backfill -- --anq <path>`): the files of one
 * snapshot under a path, through the cluster's S3 API (ListObjectsV2 of `.snapshot/<name>/`, the
 * watcher's own S3SnapshotFileLister), in key order, the last key of a page as the next page's
 * cursor. Each file becomes the event the watcher's backfill publishes for it
 * (snapshotFileEvent: `VNA.Archive.FileReplicated` with the `anq://` URL and the snapshot), so
 * ingestion reads it as of that snapshot, never from the tree replication is still writing.
 *
 * A snapshot does not change: the same cursor gives the same page, which the checkpoint's offset
 * within a page relies on. The snapshot is part of the lister's name, so a checkpoint is never
 * resumed against another one; the command names its checkpoint after the snapshot.
 */
import { coveringSnapshotSources, QumuloRestClient, type QumuloSnapshot } from '../anq/qumuloRest';
import { type ArchiveFileEvent, snapshotFileEvent,type SnapshotFileLister } from '../anq/watcher';
import { S3SnapshotFileLister } from '../anq/watcherAdapters';
import type { AnqSettings } from '../config/anqSettings';
import { ErrorCodes, PipelineError } from '../errors';
import { anqSourceUrl } from '../events/ingestEvents';
import { type Generation, generationTag } from '../ingest/generation';
import { anqS3Client } from '../storage/anqSourceStore';
import type { BackfillItem, BackfillPage, SourceLister } from './backfill';

export interface AnqExportScope {
  cluster: string;
  /** Absolute file-system path of the bucket's root ("/" for the root). */
  exportPath: string;
  /** The key prefix listed, relative to the export (a directory ending with "/", or "" for all of it). */
  prefix: string;
}

/** Root of the export as paths start with it ("" for "/"). */
function exportRoot(exportPath: string): string {
  return exportPath === '/' ? '' : exportPath.replace(/\/+$/, '');
}

export class AnqSnapshotLister implements SourceLister {
  readonly name: string;

  constructor(
    private readonly files: SnapshotFileLister,
    private readonly scope: AnqExportScope,
    private readonly snapshot: Pick<QumuloSnapshot, 'id' | 'name' | 'timestamp'>,
  ) {
    this.name = `anq:${scope.cluster}${exportRoot(scope.exportPath)}/${scope.prefix}@${snapshot.id}`;
  }

  /** The key of a listed item (its path relative to the export), from its URL. */
  private keyOf(item: BackfillItem): string {
    const path = decodeURIComponent(new URL(item.url).pathname);
    return path.slice(exportRoot(this.scope.exportPath).length + 1);
  }

  async listPage(cursor: string | undefined, pageSize: number, options: { abortSignal?: AbortSignal } = {}): Promise<BackfillPage> {
    const page = await this.files.listFiles(this.snapshot, this.scope.prefix, cursor, { limit: pageSize, abortSignal: options.abortSignal });
    const root = exportRoot(this.scope.exportPath);
    return {
      items: page.files.map((f) => ({
        url: anqSourceUrl(this.scope.cluster, `${root}/${f.key}`),
        etag: f.etag ?? '',
        size: f.size,
        lastModified: f.lastModified.toISOString(),
      })),
      ...(page.done || page.lastKey === undefined ? {} : { next: page.lastKey }),
    };
  }

  /** The watcher's backfill event (same id as the watcher's for the same snapshot and path); a re-index names its generation. */
  eventOf(item: BackfillItem, _time: string, reindexUnder?: Generation): ArchiveFileEvent {
    const file = { key: this.keyOf(item), size: item.size, lastModified: new Date(item.lastModified ?? 0), etag: item.etag };
    return snapshotFileEvent(this.scope, this.snapshot, file, reindexUnder ? `REINDEX\0${generationTag(reindexUnder)}` : 'BACKFILL');
  }
}

/**
 * The lister of a directory of the ANQ export (`npm run backfill -- --anq <path>`, a backfill job
 * with an ANQ path): the path must lie inside the configured export and prefix (ingestion
 * refuses any other), and is listed as of the newest snapshot of the export (or the one named).
 * Throws CONFIG_INVALID (settings), REQUEST_INVALID (the path) or STATE_CONFLICT (no such
 * snapshot), with a message for the operator.
 */
export async function anqBackfillLister(anq: AnqSettings | undefined, path: string, snapshotId: number | undefined): Promise<{ lister: AnqSnapshotLister; snapshotId: number; prefix: string }> {
  if (!anq) throw new PipelineError(ErrorCodes.CONFIG_INVALID, 'an ANQ backfill needs the ANQ source settings (ANQ_S3_ENDPOINT, ANQ_S3_BUCKET, ANQ_CLUSTER_NAME, ...), as the functions have them');
  if (anq.readFrom !== 'snapshot' || !anq.rest) throw new PipelineError(ErrorCodes.CONFIG_INVALID, 'an ANQ backfill lists a snapshot: it needs ANQ_READ_FROM=snapshot and ANQ_REST_ENDPOINT/ANQ_REST_TOKEN');
  const root = anq.exportPath === '/' ? '' : anq.exportPath;
  const scopeRoot = `${root}/${anq.prefix}`;
  const wanted = path.endsWith('/') ? path : `${path}/`;
  if (!wanted.startsWith(scopeRoot)) throw new PipelineError(ErrorCodes.REQUEST_INVALID, `the ANQ path must name a directory under ${scopeRoot} (the export and prefix ingestion accepts)`);
  const prefix = wanted.slice(root.length + 1);
  const api = new QumuloRestClient(anq.rest.endpoint, anq.rest.token);
  const covering = await coveringSnapshotSources(api, anq);
  const snapshots = (await api.listSnapshots()).filter((s) => covering.includes(s.source_file_id));
  const snapshot = snapshotId === undefined ? snapshots.at(-1) : snapshots.find((s) => s.id === snapshotId);
  if (!snapshot) throw new PipelineError(ErrorCodes.STATE_CONFLICT, snapshotId === undefined ? 'no snapshot of the export is kept: take one (the replication policy does) and run again' : `snapshot ${snapshotId} is not a kept snapshot of the export`);
  const lister = new AnqSnapshotLister(new S3SnapshotFileLister(anqS3Client(anq.s3), anq.s3.bucket), { cluster: anq.cluster, exportPath: anq.exportPath, prefix }, snapshot);
  return { lister, snapshotId: snapshot.id, prefix };
}
