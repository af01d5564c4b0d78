/**
 * The analytics export (issue 16): the research catalog written as Parquet tables into a new
 * snapshot of the analytics container, published atomically.
 *
 * Protocol (docs/analytics.md):
 * 1. read the pointer `_current.json` and its version (ETag), then take a snapshot id that
 *    sorts after every id taken before that read (the time, then random);
 * 2. page through the catalog's read feed, handing each document's row to the columnar writer
 *    (which spills to disk: memory does not grow with the catalog);
 * 3. upload every file under `snapshots/<id>/<table>/modality=../year=../`, then the snapshot's
 *    `_manifest.json` (files, row counts, bytes, schemas);
 * 4. publish: replace the pointer only if its version is still the one read in step 1. A run
 *    that loses (another run published meanwhile) deletes its own snapshot and reports it;
 * 5. delete the snapshots older than the one just replaced: the replaced one stays for readers
 *    that resolved the pointer before step 4.
 *
 * A reader resolves the pointer, then the manifest, and reads only the files the manifest lists;
 * it never sees a half-written snapshot, because nothing points at one. Runs in flight are never
 * removed by another run's step 5: their ids sort after the replaced snapshot's (step 1).
 */
import type { ResearchDocument } from '../catalog/documents';
import type { Row } from './tables';
import { type Column, rowOf, SCHEMAS, type TableName, TABLES } from './tables';

export const POINTER_BLOB = '_current.json';
export const SNAPSHOTS_PREFIX = 'snapshots/';
export const MANIFEST_NAME = '_manifest.json';

/** What `_current.json` says: the published snapshot. */
export interface SnapshotPointer {
  snapshotId: string;
  /** Blob name of the snapshot's manifest. */
  manifest: string;
  publishedAt: string;
  /** The snapshot this one replaced (kept until the next publish). */
  previousSnapshotId?: string;
}

export interface ManifestFile {
  /** Blob name in the analytics container. */
  path: string;
  rows: number;
  bytes: number;
  /** The hive partition values of the file's folder (null: absent). */
  partition: Record<string, string | null>;
}

export interface SnapshotManifest {
  formatVersion: 1;
  snapshotId: string;
  startedAt: string;
  completedAt: string;
  /** Catalog documents read (all types). */
  documentsRead: number;
  partitioning: { columns: string[]; style: 'hive'; yearOf: 'shifted StudyDate' };
  tables: Record<TableName, { rows: number; bytes: number; columns: Column[]; files: ManifestFile[] }>;
}

/** Every document of the research catalog, a page at a time. Read-only; throws PipelineError SERVICE_* on faults. */
export interface CatalogFeed {
  pages(options?: { pageSize?: number; abortSignal?: AbortSignal }): AsyncIterable<readonly ResearchDocument[]>;
}

/** One Parquet file the writer produced, on local disk until uploaded. */
export interface WrittenFile {
  table: TableName;
  /** Path inside the table's folder, `/`-separated: `modality=CT/year=2019/data_0.parquet`. */
  relativePath: string;
  localPath: string;
  rows: number;
  bytes: number;
  partition: Record<string, string | null>;
}

/** Writes rows into partitioned Parquet files; not reusable after `finish`. */
export interface ColumnarWriter {
  append(table: TableName, row: Row): Promise<void>;
  /** Writes the files and lists them. */
  finish(): Promise<WrittenFile[]>;
  /** Removes the local files. Idempotent. */
  close(): Promise<void>;
}

/** The analytics container. Throws PipelineError SERVICE_* on faults. */
export interface AnalyticsStore {
  /** The published pointer and its version; undefined when nothing was ever published. */
  readPointer(): Promise<{ pointer: SnapshotPointer; version: string } | undefined>;
  /** Uploads a local file to `name`, overwriting. Idempotent. */
  uploadFile(name: string, localPath: string, options?: { abortSignal?: AbortSignal }): Promise<void>;
  /** Writes a JSON blob, overwriting. Idempotent. */
  putJson(name: string, value: unknown): Promise<void>;
  /**
   * Replaces the pointer only if its version is still `expectedVersion` (undefined: only if there
   * is none). False when another writer changed it first; nothing is written then.
   */
  publish(pointer: SnapshotPointer, expectedVersion: string | undefined): Promise<boolean>;
  /** Ids of the snapshots present (folders under `snapshots/`). */
  listSnapshots(): Promise<string[]>;
  /** Deletes every blob of the snapshot; the number deleted. Idempotent. */
  deleteSnapshot(snapshotId: string): Promise<number>;
}

export interface ExportDeps {
  feed: CatalogFeed;
  store: AnalyticsStore;
  openWriter(): Promise<ColumnarWriter>;
  now?: () => Date;
  random?: () => string;
  log?: (message: string) => void;
}

export interface ExportOptions {
  pageSize?: number;
  abortSignal?: AbortSignal;
  /** Called after the manifest is written, before the publish (tests hold a run there). */
  beforePublish?: (snapshotId: string) => Promise<void>;
}

export interface ExportResult {
  snapshotId: string;
  /** False when another run published first: this run's snapshot was deleted. */
  published: boolean;
  documentsRead: number;
  rows: Record<TableName, number>;
  files: number;
  bytes: number;
  /** Older snapshots deleted after the publish. */
  removedSnapshots: string[];
  manifest: string;
}

/** Snapshot ids sort by the time they were taken: `20261202T101500123Z-<random>`. */
export function newSnapshotId(now: Date, random: string): string {
  return `${now.toISOString().replace(/[-:.]/g, '')}-${random}`;
}

export function snapshotPrefix(snapshotId: string): string {
  return `${SNAPSHOTS_PREFIX}${snapshotId}/`;
}

/**
 * The snapshots a publish may remove: those older than the one it replaced. The current one,
 * the replaced one, and any newer id (a run in flight) are kept.
 */
export function snapshotsToRemove(present: readonly string[], current: string, replaced: string | undefined): string[] {
  if (replaced === undefined) return [];
  return present.filter((id) => id !== current && id !== replaced && id < replaced);
}

function defaultRandom(): string {
  return Math.random().toString(36).slice(2, 10).padEnd(8, '0');
}

/**
 * One export run. Idempotent as a whole (each run writes a snapshot of its own); a run that
 * throws leaves an unpublished snapshot that a later run's cleanup removes. Throws what its
 * dependencies throw; the pointer is then unchanged.
 */
export async function exportCatalogSnapshot(deps: ExportDeps, options: ExportOptions = {}): Promise<ExportResult> {
  const now = deps.now ?? (() => new Date());
  const log = deps.log ?? (() => undefined);
  const before = await deps.store.readPointer();
  const started = now();
  const snapshotId = newSnapshotId(started, (deps.random ?? defaultRandom)());
  const prefix = snapshotPrefix(snapshotId);
  const writer = await deps.openWriter();
  let uploaded = false;
  let published = false;
  try {
    let documentsRead = 0;
    const pageOptions = { ...(options.pageSize ? { pageSize: options.pageSize } : {}), ...(options.abortSignal ? { abortSignal: options.abortSignal } : {}) };
    for await (const page of deps.feed.pages(pageOptions)) {
      for (const doc of page) {
        documentsRead++;
        const mapped = rowOf(doc);
        if (mapped) await writer.append(mapped.table, mapped.row);
      }
    }
    const written = await writer.finish();
    const tables = Object.fromEntries(TABLES.map((t) => [t, { rows: 0, bytes: 0, columns: SCHEMAS[t], files: [] as ManifestFile[] }])) as SnapshotManifest['tables'];
    uploaded = true;
    for (const f of written) {
      const path = `${prefix}${f.table}/${f.relativePath}`;
      await deps.store.uploadFile(path, f.localPath, options.abortSignal ? { abortSignal: options.abortSignal } : {});
      const t = tables[f.table];
      t.files.push({ path, rows: f.rows, bytes: f.bytes, partition: f.partition });
      t.rows += f.rows;
      t.bytes += f.bytes;
    }
    for (const t of TABLES) tables[t].files.sort((a, b) => (a.path < b.path ? -1 : 1));
    const manifest: SnapshotManifest = {
      formatVersion: 1,
      snapshotId,
      startedAt: started.toISOString(),
      completedAt: now().toISOString(),
      documentsRead,
      partitioning: { columns: ['modality', 'year'], style: 'hive', yearOf: 'shifted StudyDate' },
      tables,
    };
    const manifestName = `${prefix}${MANIFEST_NAME}`;
    await deps.store.putJson(manifestName, manifest);
    await options.beforePublish?.(snapshotId);
    const pointer: SnapshotPointer = {
      snapshotId,
      manifest: manifestName,
      publishedAt: now().toISOString(),
      ...(before ? { previousSnapshotId: before.pointer.snapshotId } : {}),
    };
    const rows = Object.fromEntries(TABLES.map((t) => [t, tables[t].rows])) as Record<TableName, number>;
    const bytes = TABLES.reduce((n, t) => n + tables[t].bytes, 0);
    const result = { snapshotId, documentsRead, rows, files: written.length, bytes, manifest: manifestName };
    if (!(await deps.store.publish(pointer, before?.version))) {
      log(`analytics export: snapshot ${snapshotId} not published, another run published first; deleting it`);
      await deps.store.deleteSnapshot(snapshotId);
      return { ...result, published: false, removedSnapshots: [] };
    }
    published = true;
    const removable = snapshotsToRemove(await deps.store.listSnapshots(), snapshotId, before?.pointer.snapshotId);
    for (const id of removable) await deps.store.deleteSnapshot(id);
    log(`analytics export: snapshot ${snapshotId} published, ${documentsRead} documents, ${written.length} files, ${bytes} bytes; ${removable.length} older snapshot(s) removed`);
    return { ...result, published: true, removedSnapshots: removable };
  } catch (e) {
    // Nothing points at a snapshot that was not published: delete what was uploaded, best effort
    // (a later run's cleanup removes what is left). A published one stays, whatever failed after.
    if (uploaded && !published) await deps.store.deleteSnapshot(snapshotId).catch(() => undefined);
    throw e;
  } finally {
    await writer.close();
  }
}
