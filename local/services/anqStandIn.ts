/**
 * Local stand-ins for an Azure Native Qumulo cluster, over a local folder that plays the
 * replication target:
 * - the file data through an S3-compatible server (the maintained s3rver fork
 *   `@20minutes/s3rver`, Node >= 20) holding one bucket whose root is the folder: the live tree
 *   under its own keys, and each snapshot under `.snapshot/<snapshot name>/<key>`, the way the
 *   ANQ adapter addresses a file as of a snapshot (see shared/storage/anqSourceStore.ts);
 * - a small Qumulo REST API (node http, no framework) with the request and response shapes of
 *   the Qumulo REST API Guide (docs.qumulo.com/rest-api-guide): `GET/POST /v3/snapshots/`
 *   (snapshots/v3_snapshots.html), `GET /v2/snapshots/{newer}/changes-since/{older}` with
 *   `after`/`limit` paging (snapshots/v2_snapshots_newer_id_changes-since_older_id.html), and
 *   `GET /v1/files/{ref}/info/attributes?snapshot=` (files/files_ref_info_attributes.html), and,
 *   with the `notify` option, `GET /v1/files/{ref}/notify?recursive=&filter=`
 *   (files/files_ref_notify.html), see notify below.
 *
 * s3rver keeps objects in its own layout, not as plain files, so the folder is copied into it
 * when a snapshot is taken: the live keys are brought up to date and the snapshot's files are
 * written under its `.snapshot` name (files unchanged since the previous snapshot by copying
 * s3rver's stored files on disk, the others through PutObject). A snapshot record holds each file's path, size, mtime and
 * content hash, which is what the tree diff compares.
 */
import { BinaryLike, CipherKey, createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import type { TransformOptions } from 'node:stream';

import { DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

import type { QumuloSnapshot } from '../../shared/anq/qumuloRest';
import { withoutNodeSupportNotice } from '../../shared/storage/anqSourceStore';
import { closeServer, listen } from '../net';

// s3rver ships no types: the part of it used here.
interface S3rverInstance {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
  /** Koa's middleware stack, composed when the server starts. */
  middleware: ((ctx: { path: string; app: object }, next: () => Promise<void>) => Promise<void>)[];
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require('@20minutes/s3rver') as new (options: Record<string, unknown>) => S3rverInstance;
const lent = Symbol.for('vna.anqStandIn.s3rverCipher');

// eslint-disable-next-line @typescript-eslint/no-require-imports
const nodeCrypto = require('node:crypto') as { createCipheriv: typeof createCipheriv; createDecipheriv: typeof createDecipheriv; [lent]?: true };

/**
 * s3rver makes the continuation tokens of truncated ListObjectsV2 answers with the DES cipher,
 * which OpenSSL 3 (Node 17+) no longer offers, so every listing longer than one page fails with
 * a 500 (the watcher's backfill lists page by page). Its `des` is served by AES-256-CBC under a
 * key and IV derived from the ones s3rver passes: the tokens stay opaque and round-trip. Only the
 * name `des`, which Node cannot serve at all, is touched; every other cipher is passed through.
 */
function lendS3rverItsCipher(): void {
  if (nodeCrypto[lent]) return;
  const cipher = nodeCrypto.createCipheriv;
  const decipher = nodeCrypto.createDecipheriv;
  const aes = (key: BinaryLike, iv: BinaryLike | null) =>
    [createHash('sha256').update(key).digest(), createHash('md5').update(iv ?? '').digest()] as const;
  nodeCrypto.createCipheriv = ((algorithm: string, key: CipherKey, iv: BinaryLike | null, options?: TransformOptions) =>
    algorithm === 'des' ? cipher('aes-256-cbc', ...aes(key as BinaryLike, iv), options) : cipher(algorithm, key, iv, options)) as typeof createCipheriv;
  nodeCrypto.createDecipheriv = ((algorithm: string, key: CipherKey, iv: BinaryLike | null, options?: TransformOptions) =>
    algorithm === 'des' ? decipher('aes-256-cbc', ...aes(key as BinaryLike, iv), options) : decipher(algorithm, key, iv, options)) as typeof createDecipheriv;
  nodeCrypto[lent] = true;
}

/** s3rver's built-in account; the cluster's S3 keys in Azure come from Key Vault. */
export const STAND_IN_S3_KEY = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

interface FileState {
  size: number;
  mtimeMs: number;
  sha256: string;
  fileId: string;
}

/** A snapshot as the REST API describes it (the client's type), with the files it froze. */
interface SnapshotRecord extends QumuloSnapshot {
  /** Relative path → state; directories are the parents of these (and the root). */
  files: Record<string, FileState>;
}

interface PersistedState {
  nextId: number;
  nextFileId: number;
  fileIds: Record<string, string>;
  snapshots: SnapshotRecord[];
}

export interface AnqStandInOptions {
  /** The replication target: the folder whose contents are the export's. */
  targetDir: string;
  /** Where the stand-ins keep their own state (s3rver's store, the snapshot records). */
  stateDir: string;
  /** The export's file-system path on the "cluster", e.g. `/replica`. */
  exportPath: string;
  bucket: string;
  /** The bearer token the REST stand-in accepts. */
  restToken: string;
  /** 0 picks a free port. */
  s3Port?: number;
  restPort?: number;
  host?: string;
  /**
   * Watch the folder live, as a cluster's file system is live: a poll of the tree (every
   * `pollMs`, default 100) keeps the S3 view of the live tree in step with the folder (on a
   * cluster an object is the file) and feeds the change-notification streams. Without it the
   * live keys follow the folder only when a snapshot is taken.
   */
  notify?: {
    pollMs?: number;
    /**
     * A stream whose unsent bytes exceed this is dropped with an error, as the cluster drops
     * a client that cannot keep up (default 1 MiB).
     */
    maxBufferedBytes?: number;
    /** Keep-alive comments this often (default 10 s). */
    keepAliveMs?: number;
  };
}

export interface AnqStandIn {
  s3Endpoint: string;
  restEndpoint: string;
  /** The file id of the export directory (the source_file_id of its snapshots). */
  exportFileId: string;
  /** Takes a snapshot of the folder as it is now (what replication does after each job). */
  takeSnapshot(nameSuffix?: string): Promise<SnapshotRecord>;
  /** Deletes a snapshot (it expired): listed as in_delete, and its `.snapshot` objects removed. */
  deleteSnapshot(id: number): Promise<void>;
  /** With the notify option: resolves once the folder's changes so far are in S3 and sent to the streams. */
  settled(): Promise<void>;
  /** With the notify option: how many notification streams are open, and how many were dropped for falling behind. */
  notifyStreams(): { open: number; dropped: number };
  close(): Promise<void>;
}

const ROOT_FILE_ID = '2';
const DEFAULT_PAGE = 1000;

function walk(dir: string, rel = ''): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (entry.name.startsWith('.')) continue;
    const r = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...walk(path.join(dir, entry.name), r));
    else if (entry.isFile()) out.push(r);
  }
  return out;
}

async function hashFile(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** The parent directories of a set of relative file paths ("" is the export root). */
function directoriesOf(files: Iterable<string>): Set<string> {
  const dirs = new Set<string>(['']);
  for (const f of files) {
    const parts = f.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  return dirs;
}

/** Copies into s3rver this many at a time: a snapshot copies the whole tree. */
const COPY_CONCURRENCY = 8;

async function eachLimited<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(COPY_CONCURRENCY, items.length) }, worker));
}

export type DiffEntry = { op: 'CREATE' | 'MODIFY' | 'DELETE'; path: string };

/**
 * The tree diff of two snapshot records, sorted by path, as Qumulo reports it: files and
 * directories created, deleted or modified (a directory whose entries changed is modified);
 * a directory's path ends with `/`.
 */
export function treeDiff(older: SnapshotRecord, newer: SnapshotRecord, exportPath: string): DiffEntry[] {
  const abs = (rel: string, dir: boolean) => `${exportPath === '/' ? '' : exportPath}/${rel}${dir && rel ? '/' : ''}`;
  const out: DiffEntry[] = [];
  const changedParents = new Set<string>();
  const parentOf = (rel: string) => (rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '');
  for (const [rel, now] of Object.entries(newer.files)) {
    const before = older.files[rel];
    if (!before) {
      out.push({ op: 'CREATE', path: abs(rel, false) });
      changedParents.add(parentOf(rel));
    } else if (before.size !== now.size || before.mtimeMs !== now.mtimeMs || before.sha256 !== now.sha256) {
      out.push({ op: 'MODIFY', path: abs(rel, false) });
    }
  }
  for (const rel of Object.keys(older.files)) {
    if (!newer.files[rel]) {
      out.push({ op: 'DELETE', path: abs(rel, false) });
      changedParents.add(parentOf(rel));
    }
  }
  const olderDirs = directoriesOf(Object.keys(older.files));
  const newerDirs = directoriesOf(Object.keys(newer.files));
  for (const d of newerDirs) if (!olderDirs.has(d)) out.push({ op: 'CREATE', path: abs(d, true) });
  for (const d of olderDirs) if (!newerDirs.has(d)) out.push({ op: 'DELETE', path: abs(d, true) });
  for (const d of changedParents) if (olderDirs.has(d) && newerDirs.has(d)) out.push({ op: 'MODIFY', path: abs(d, true) });
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

class SnapshotBook {
  state: PersistedState;

  constructor(private readonly file: string) {
    this.state = fs.existsSync(file)
      ? (JSON.parse(fs.readFileSync(file, 'utf8')) as PersistedState)
      : { nextId: 1, nextFileId: 3, fileIds: {}, snapshots: [] };
  }

  fileIdOf(rel: string): string {
    if (rel === '') return ROOT_FILE_ID;
    let id = this.state.fileIds[rel];
    if (!id) {
      id = String(this.state.nextFileId++);
      this.state.fileIds[rel] = id;
    }
    return id;
  }

  save(): void {
    fs.writeFileSync(this.file, JSON.stringify(this.state));
  }

  get(id: number): SnapshotRecord | undefined {
    return this.state.snapshots.find((s) => s.id === id);
  }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function qumuloError(res: http.ServerResponse, status: number, errorClass: string, description: string): void {
  json(res, status, { module: 'qfsd', error_class: errorClass, description });
}

function snapshotInfo(s: SnapshotRecord): Omit<SnapshotRecord, 'files'> {
  const { files: _files, ...info } = s;
  return info;
}

/** What the poll sees of one entry of the folder. */
interface LiveEntry {
  ino: number;
  dir: boolean;
  size: number;
  mtimeMs: number;
}

/** The folder as it is now: files and directories by relative path (dot names left out, as in walk). */
function scanTree(dir: string, rel = '', out = new Map<string, LiveEntry>()): Map<string, LiveEntry> {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(path.join(dir, rel), { withFileTypes: true });
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const r = rel ? `${rel}/${entry.name}` : entry.name;
    let st: fs.Stats;
    try {
      st = fs.statSync(path.join(dir, r));
    } catch {
      continue; // removed meanwhile: the next poll sees it gone
    }
    if (st.isDirectory()) {
      out.set(r, { ino: st.ino, dir: true, size: 0, mtimeMs: 0 });
      scanTree(dir, r, out);
    } else if (st.isFile()) out.set(r, { ino: st.ino, dir: false, size: st.size, mtimeMs: st.mtimeMs });
  }
  return out;
}

/** The notification types of the REST API Guide (files/files_ref_notify.html, `filter`). */
export const NOTIFY_TYPES = [
  'child_file_added', 'child_dir_added', 'child_file_removed', 'child_dir_removed',
  'child_file_moved_from', 'child_file_moved_to', 'child_dir_moved_from', 'child_dir_moved_to',
  'child_btime_changed', 'child_mtime_changed', 'child_atime_changed', 'child_size_changed',
  'child_extra_attrs_changed', 'child_acl_changed', 'child_owner_changed', 'child_group_changed',
  'child_data_written', 'child_stream_added', 'child_stream_removed', 'child_stream_moved_from',
  'child_stream_moved_to', 'child_stream_size_changed', 'child_stream_data_written', 'self_removed',
] as const;

/** A change seen by the poll, by path relative to the export. */
interface LiveChange {
  type: (typeof NOTIFY_TYPES)[number];
  rel: string;
}

/**
 * The changes between two polls, in the order a file system makes them: moves (by inode;
 * entries under a moved directory move with it and are not reported one by one), removals,
 * additions, then writes.
 */
function liveChanges(before: Map<string, LiveEntry>, after: Map<string, LiveEntry>): { changes: LiveChange[]; moved: [string, string][] } {
  const changes: LiveChange[] = [];
  const moved: [string, string][] = [];
  const beforeByIno = new Map<number, string>();
  for (const [rel, e] of before) beforeByIno.set(e.ino, rel);
  const movedFrom = new Set<string>();
  const movedTo = new Set<string>();
  // Shortest paths first, so a moved directory is found before its entries.
  for (const [rel, e] of [...after].sort((a, b) => a[0].length - b[0].length)) {
    if (before.get(rel)?.ino === e.ino) continue;
    const from = beforeByIno.get(e.ino);
    if (from === undefined || after.get(from)?.ino === e.ino) continue;
    if (moved.some(([f, t]) => from.startsWith(`${f}/`) && rel === `${t}${from.slice(f.length)}`)) {
      movedFrom.add(from);
      movedTo.add(rel);
      continue;
    }
    moved.push([from, rel]);
    movedFrom.add(from);
    movedTo.add(rel);
    changes.push({ type: e.dir ? 'child_dir_moved_from' : 'child_file_moved_from', rel: from }, { type: e.dir ? 'child_dir_moved_to' : 'child_file_moved_to', rel });
  }
  for (const [rel, e] of before) {
    if (movedFrom.has(rel) || after.get(rel)?.ino === e.ino) continue;
    changes.push({ type: e.dir ? 'child_dir_removed' : 'child_file_removed', rel });
  }
  for (const [rel, e] of after) {
    const was = before.get(rel);
    if (movedTo.has(rel)) continue;
    if (was?.ino !== e.ino) {
      changes.push({ type: e.dir ? 'child_dir_added' : 'child_file_added', rel });
      if (!e.dir && e.size > 0) changes.push({ type: 'child_data_written', rel });
    } else if (!e.dir && (was.size !== e.size || was.mtimeMs !== e.mtimeMs)) {
      changes.push({ type: 'child_data_written', rel });
      if (was.size !== e.size) changes.push({ type: 'child_size_changed', rel });
      else changes.push({ type: 'child_mtime_changed', rel });
    }
  }
  return { changes, moved };
}

interface NotifyClient {
  res: http.ServerResponse;
  /** The watched directory, relative to the export ("" for its root). */
  base: string;
  recursive: boolean;
  filter?: Set<string>;
  keepAlive: NodeJS.Timeout;
}

/** Starts both stand-ins. */
export async function startAnqStandIn(options: AnqStandInOptions): Promise<AnqStandIn> {
  const host = options.host ?? '127.0.0.1';
  const exportPath = options.exportPath.replace(/\/+$/, '') || '/';
  fs.mkdirSync(options.targetDir, { recursive: true });
  fs.mkdirSync(options.stateDir, { recursive: true });
  const book = new SnapshotBook(path.join(options.stateDir, 'snapshots.json'));

  lendS3rverItsCipher();
  const s3rverDir = path.join(options.stateDir, 's3rver');
  const s3rver = new S3rver({
    address: host,
    port: options.s3Port ?? 0,
    silent: true,
    directory: s3rverDir,
    configureBuckets: [{ name: options.bucket }],
  });
  // s3rver computes the canonical URI of a bucket-level request (ListObjectsV2) without the
  // trailing slash the AWS SDK sends and signs (`GET /<bucket>/?list-type=2`), so the
  // signatures of exactly those requests cannot match; they alone are let through with a
  // mismatched signature (the access key must still be s3rver's). Object requests stay checked.
  const bucketLevel = new RegExp(`^/${options.bucket.replace(/[.]/g, '\\.')}/$`);
  s3rver.middleware.unshift(async (ctx, next) => {
    if (bucketLevel.test(ctx.path)) ctx.app = Object.create(ctx.app, { allowMismatchedSignatures: { value: true } }) as object;
    await next();
  });
  const { port: s3Port } = await s3rver.run();
  const s3Endpoint = `http://${host}:${s3Port}`;
  const s3 = withoutNodeSupportNotice(() => new S3Client({
    endpoint: s3Endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: STAND_IN_S3_KEY,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  }));

  /**
   * Writes a file's bytes under a key, with the file's modification time as the object's
   * Last-Modified: on Qumulo an object is the file, so its Last-Modified is the file's mtime
   * (the same in every snapshot that holds that version), not the time of a copy. s3rver
   * answers Last-Modified from its stored object file's mtime, so that file's times are set.
   */
  /** Where s3rver's filesystem store keeps an object's bytes (`object`), `object.md5` and `metadata.json`. */
  const storedPath = (key: string, resource: string) => {
    const parts = key.split('/');
    return path.join(s3rverDir, options.bucket, ...parts.slice(0, -1), `${parts.at(-1) ?? ''}._S3rver_${resource}`);
  };
  const STORED = ['object', 'object.md5', 'metadata.json'];

  const put = async (key: string, file: string) => {
    const { mtime, size } = fs.statSync(file);
    const stored = storedPath(key, 'object');
    // A replaced object's old bytes are removed first, so that the wait below sees the new ones only.
    fs.rmSync(stored, { force: true });
    await s3.send(new PutObjectCommand({ Bucket: options.bucket, Key: key, Body: fs.readFileSync(file) }));
    // s3rver answers before its write stream has closed: wait for the bytes to be there, so no late write moves the time again.
    for (let i = 0; i < 100 && (!fs.existsSync(stored) || fs.statSync(stored).size < size); i++) await new Promise((r) => setTimeout(r, 5));
    fs.utimesSync(stored, mtime, mtime);
  };

  /**
   * The same version under another key: s3rver's stored files copied on disk, which is what a
   * PutObject would have written (a snapshot holds most files unchanged from the one before,
   * and copying those through S3 made every snapshot cost the whole tree). False when the
   * source is not stored (an expired snapshot's objects are deleted): then it is put.
   */
  const copyStored = (fromKey: string, toKey: string, file: string): boolean => {
    if (!STORED.every((r) => fs.existsSync(storedPath(fromKey, r)))) return false;
    fs.mkdirSync(path.dirname(storedPath(toKey, 'object')), { recursive: true });
    for (const r of STORED) fs.copyFileSync(storedPath(fromKey, r), storedPath(toKey, r));
    const { mtime } = fs.statSync(file);
    fs.utimesSync(storedPath(toKey, 'object'), mtime, mtime);
    return true;
  };

  /** Copies the live tree into the bucket: changed files are written, removed ones deleted. */
  let liveKeys = new Map<string, string>(Object.entries(book.state.snapshots.at(-1)?.files ?? {}).map(([rel, f]) => [rel, f.sha256]));
  const syncLive = async (files: Record<string, FileState>) => {
    await eachLimited(Object.entries(files).filter(([rel, f]) => liveKeys.get(rel) !== f.sha256), ([rel]) => put(rel, path.join(options.targetDir, rel)));
    for (const rel of liveKeys.keys()) if (!files[rel]) await s3.send(new DeleteObjectCommand({ Bucket: options.bucket, Key: rel }));
    liveKeys = new Map(Object.entries(files).map(([rel, f]) => [rel, f.sha256]));
  };

  // One snapshot at a time, as the folder is read and copied.
  let snapshotChain: Promise<unknown> = Promise.resolve();
  const takeSnapshot = (nameSuffix = 'OnDemand'): Promise<SnapshotRecord> => {
    const run = snapshotChain.then(async () => {
      const files: Record<string, FileState> = {};
      for (const rel of walk(options.targetDir)) {
        const full = path.join(options.targetDir, rel);
        const st = fs.statSync(full);
        files[rel] = { size: st.size, mtimeMs: Math.floor(st.mtimeMs), sha256: await hashFile(full), fileId: book.fileIdOf(rel) };
      }
      const id = book.state.nextId++;
      const record: SnapshotRecord = {
        id,
        name: `${id}_${nameSuffix}`,
        timestamp: new Date().toISOString(),
        source_file_id: ROOT_FILE_ID,
        policy_id: null,
        expiration: null,
        in_delete: false,
        files,
      };
      const previous = book.state.snapshots.filter((s) => !s.in_delete).at(-1);
      await eachLimited(Object.keys(files), async (rel) => {
        const file = path.join(options.targetDir, rel);
        const key = `.snapshot/${record.name}/${rel}`;
        const unchanged = previous && previous.files[rel]?.sha256 === files[rel]?.sha256;
        if (!unchanged || !copyStored(`.snapshot/${previous.name}/${rel}`, key, file)) await put(key, file);
      });
      // With the notify option the poll keeps the live keys in step with the folder itself.
      if (!options.notify) await syncLive(files);
      book.state.snapshots.push(record);
      book.save();
      return record;
    });
    snapshotChain = run.catch(() => undefined);
    return run;
  };

  const relOf = (absPath: string): string | undefined => {
    const root = exportPath === '/' ? '' : exportPath;
    if (absPath === root || absPath === `${root}/`) return '';
    if (!absPath.startsWith(`${root}/`)) return undefined;
    return absPath.slice(root.length + 1).replace(/\/+$/, '');
  };

  /** The attributes of a file or directory, as of a snapshot or the live folder. */
  const attributesOf = (ref: string, snapshotId: number | undefined): Record<string, unknown> | undefined => {
    let rel: string | undefined;
    if (/^\d+$/.test(ref)) {
      rel = ref === ROOT_FILE_ID ? '' : Object.entries(book.state.fileIds).find(([, id]) => id === ref)?.[0];
    } else rel = relOf(ref);
    if (rel === undefined) return undefined;
    let file: { size: number; mtimeMs: number; sha256?: string } | undefined;
    let isDir: boolean;
    if (snapshotId !== undefined) {
      const snap = book.get(snapshotId);
      if (!snap) return undefined;
      file = snap.files[rel];
      isDir = !file && directoriesOf(Object.keys(snap.files)).has(rel);
    } else {
      const full = path.join(options.targetDir, rel);
      if (!fs.existsSync(full)) return undefined;
      const st = fs.statSync(full);
      isDir = st.isDirectory();
      if (!isDir) file = { size: st.size, mtimeMs: Math.floor(st.mtimeMs) };
    }
    if (!file && !isDir) return undefined;
    const root = exportPath === '/' ? '' : exportPath;
    const fullPath = rel === '' ? `${root}/` : `${root}/${rel}${isDir ? '/' : ''}`;
    const id = book.fileIdOf(rel);
    const time = new Date(file?.mtimeMs ?? 0).toISOString();
    return {
      path: fullPath,
      name: rel === '' ? '' : (rel.split('/').at(-1) ?? ''),
      num_links: isDir ? 2 : 1,
      type: isDir ? 'FS_FILE_TYPE_DIRECTORY' : 'FS_FILE_TYPE_FILE',
      major_minor_numbers: { major: 0, minor: 0 },
      symlink_target_type: 'FS_FILE_TYPE_UNKNOWN',
      file_number: id,
      id,
      mode: isDir ? '0755' : '0644',
      owner: '500',
      group: '513',
      blocks: String(Math.ceil((file?.size ?? 0) / 4096)),
      datablocks: String(Math.ceil((file?.size ?? 0) / 4096)),
      metablocks: '1',
      size: String(file?.size ?? 0),
      access_time: time,
      modification_time: time,
      change_time: time,
      creation_time: time,
      child_count: isDir ? 1 : 0,
      data_revision: String(file ? parseInt((file.sha256 ?? '0').slice(0, 8), 16) : 0),
    };
  };

  /*
   * Change notifications (files/files_ref_notify.html; the payload is described in the
   * administrator guide, watching-file-attribute-directory-changes/rest.html): after a comment
   * line that says the request registered, each SSE `data:` line is a JSON list of `{ type,
   * path, spine, stream_name }`, `path` relative to the watched directory, `spine` the file ids
   * from the oldest ancestor to the file, `stream_name` null for the default stream; comments
   * keep the connection alive. "In case a client can't keep up with the amount of events that
   * the system emits, the cluster stops queuing events and produces an error" (how-file-system-
   * change-notifications-work.html): here a stream whose unsent bytes exceed maxBufferedBytes
   * gets a final `event: error` whose data is a Qumulo error body and is closed. The guide does
   * not give that error's class; `fs_notify_queue_overflow_error` is the stand-in's.
   */
  const notifyClients = new Set<NotifyClient>();
  let notifyDropped = 0;
  const maxBuffered = options.notify?.maxBufferedBytes ?? 1024 * 1024;
  const spineOf = (rel: string) => {
    const parts = rel.split('/');
    return [ROOT_FILE_ID, ...parts.map((_, i) => book.fileIdOf(parts.slice(0, i + 1).join('/')))];
  };
  const endNotifyClient = (client: NotifyClient, error?: { error_class: string; description: string }) => {
    if (!notifyClients.delete(client)) return;
    clearInterval(client.keepAlive);
    if (error) {
      notifyDropped++;
      client.res.write(`event: error\ndata: ${JSON.stringify({ module: 'qfsd', ...error })}\n\n`);
    }
    client.res.end();
    // A client that reads nothing more would hold the socket: it is cut after a while.
    setTimeout(() => client.res.destroy(), 5_000).unref();
  };
  const sendChanges = (changes: LiveChange[]) => {
    for (const client of [...notifyClients]) {
      const list = changes
        .filter((c) => !client.filter || client.filter.has(c.type))
        .filter((c) => (client.base === '' || c.rel.startsWith(`${client.base}/`)))
        .map((c) => ({ rel: client.base === '' ? c.rel : c.rel.slice(client.base.length + 1), c }))
        .filter(({ rel }) => client.recursive || !rel.includes('/'))
        .map(({ rel, c }) => ({ type: c.type, path: rel, spine: spineOf(c.rel), stream_name: null }));
      if (list.length === 0) continue;
      client.res.write(`data: ${JSON.stringify(list)}\n\n`);
      if (client.res.writableLength > maxBuffered) {
        endNotifyClient(client, { error_class: 'fs_notify_queue_overflow_error', description: 'The client did not keep up with the notifications; events were dropped' });
      }
    }
  };
  const openNotifyStream = (ref: string, url: URL, res: http.ServerResponse) => {
    if (!options.notify) return qumuloError(res, 404, 'http_not_found_error', 'No such resource');
    const found = attributesOf(ref, undefined);
    if (!found) return qumuloError(res, 404, 'fs_no_such_entry_error', 'No such entry');
    if (found.type !== 'FS_FILE_TYPE_DIRECTORY') return qumuloError(res, 400, 'fs_not_a_directory_error', 'Not a directory');
    const filterText = url.searchParams.get('filter');
    const filter = filterText ? new Set(filterText.split(',').map((t) => t.trim()).filter(Boolean)) : undefined;
    const unknown = [...(filter ?? [])].filter((t) => !(NOTIFY_TYPES as readonly string[]).includes(t));
    if (unknown.length > 0) return qumuloError(res, 400, 'http_bad_request_error', `Unknown notification type: ${unknown.join(', ')}`);
    const base = relOf(String(found.path)) ?? '';
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.write(': registered for notifications\n\n');
    const client: NotifyClient = {
      res,
      base,
      recursive: url.searchParams.get('recursive') === 'true',
      ...(filter ? { filter } : {}),
      keepAlive: setInterval(() => res.write(': keep-alive\n\n'), options.notify.keepAliveMs ?? 10_000),
    };
    client.keepAlive.unref();
    notifyClients.add(client);
    res.on('close', () => endNotifyClient(client));
  };

  // The poll: the live keys in S3 follow the folder, then the streams are told (one poll at a time, never during a snapshot's copy).
  let liveView = new Map<string, LiveEntry>();
  let pollTimer: NodeJS.Timeout | undefined;
  let closing = false;
  const poll = (): Promise<void> => {
    const run = snapshotChain.then(async () => {
      const next = scanTree(options.targetDir);
      const { changes } = liveChanges(liveView, next);
      const toPut = new Set<string>();
      for (const [rel, e] of next) {
        const was = liveView.get(rel);
        if (!e.dir && (!was || was.ino !== e.ino || was.size !== e.size || was.mtimeMs !== e.mtimeMs)) toPut.add(rel);
      }
      await eachLimited([...toPut], (rel) => put(rel, path.join(options.targetDir, rel)).catch(() => undefined));
      for (const [rel, e] of liveView) {
        if (!e.dir && !next.get(rel)) await s3.send(new DeleteObjectCommand({ Bucket: options.bucket, Key: rel }));
      }
      liveView = next;
      if (changes.length > 0) sendChanges(changes);
    });
    snapshotChain = run.catch(() => undefined);
    return run;
  };
  const schedulePoll = () => {
    if (closing) return;
    pollTimer = setTimeout(() => void poll().catch(() => undefined).finally(schedulePoll), options.notify?.pollMs ?? 100);
  };

  const rest = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        if (req.headers.authorization !== `Bearer ${options.restToken}`) return qumuloError(res, 401, 'authentication_error', 'Need bearer token');
        const url = new URL(req.url ?? '/', 'http://stand-in');
        const p = url.pathname;
        if (p === '/v3/snapshots/' && req.method === 'GET') {
          const filter = url.searchParams.get('filter') ?? 'all';
          const entries = book.state.snapshots
            .filter((s) => (filter === 'exclude_in_delete' ? !s.in_delete : filter === 'only_in_delete' ? s.in_delete : true))
            .map(snapshotInfo);
          return json(res, 200, { entries });
        }
        if (p === '/v3/snapshots/' && req.method === 'POST') {
          const body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { name_suffix?: string }) : {};
          return json(res, 200, snapshotInfo(await takeSnapshot(body.name_suffix || 'OnDemand')));
        }
        const diff = /^\/v2\/snapshots\/(\d+)\/changes-since\/(\d+)$/.exec(p);
        if (diff && req.method === 'GET') {
          const newer = book.get(Number(diff[1]));
          const older = book.get(Number(diff[2]));
          if (!newer || !older) return qumuloError(res, 404, 'snapshot_not_found_error', 'Snapshot not found');
          const limit = Math.min(Math.max(Number(url.searchParams.get('limit') ?? DEFAULT_PAGE) || DEFAULT_PAGE, 1), DEFAULT_PAGE);
          const afterToken = url.searchParams.get('after');
          const after = afterToken ? Buffer.from(afterToken, 'base64url').toString('utf8') : undefined;
          const all = treeDiff(older, newer, exportPath);
          const start = after === undefined ? 0 : all.findIndex((e) => e.path > after);
          const entries = start < 0 ? [] : all.slice(start, start + limit);
          const last = entries.at(-1);
          const more = start >= 0 && start + limit < all.length && last;
          return json(res, 200, {
            entries,
            paging: { next: more ? `${p}?after=${Buffer.from(last.path).toString('base64url')}&limit=${limit}` : null },
          });
        }
        const notify = /^\/v1\/files\/([^/]+)\/notify$/.exec(p);
        if (notify && req.method === 'GET') return openNotifyStream(decodeURIComponent(notify[1] ?? ''), url, res);
        const attrs = /^\/v1\/files\/([^/]+)\/info\/attributes$/.exec(p);
        if (attrs && req.method === 'GET') {
          const snapshot = url.searchParams.get('snapshot');
          const found = attributesOf(decodeURIComponent(attrs[1] ?? ''), snapshot === null ? undefined : Number(snapshot));
          return found ? json(res, 200, found) : qumuloError(res, 404, 'fs_no_such_entry_error', 'No such entry');
        }
        return qumuloError(res, 404, 'http_not_found_error', 'No such resource');
      })().catch((e: unknown) => qumuloError(res, 500, 'internal_error', (e as Error).message));
    });
  });
  const restPort = await listen(rest, options.restPort ?? 0, host, 'Qumulo REST stand-in');
  if (options.notify) {
    await poll();
    schedulePoll();
  }

  return {
    s3Endpoint,
    restEndpoint: `http://${host}:${restPort}`,
    exportFileId: ROOT_FILE_ID,
    takeSnapshot,
    async deleteSnapshot(id: number) {
      const snap = book.get(id);
      if (!snap) return;
      snap.in_delete = true;
      book.save();
      for (const rel of Object.keys(snap.files)) await s3.send(new DeleteObjectCommand({ Bucket: options.bucket, Key: `.snapshot/${snap.name}/${rel}` }));
    },
    async settled() {
      // The poll under way may have read the folder before the caller's last change: one more, whole.
      await snapshotChain;
      await poll();
    },
    notifyStreams: () => ({ open: notifyClients.size, dropped: notifyDropped }),
    async close() {
      closing = true;
      if (pollTimer) clearTimeout(pollTimer);
      const clients = [...notifyClients];
      for (const client of clients) endNotifyClient(client);
      for (const client of clients) client.res.destroy();
      await snapshotChain;
      await closeServer(rest);
      await s3rver.close();
      s3.destroy();
    },
  };
}
