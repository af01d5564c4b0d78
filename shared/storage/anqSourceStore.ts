/**
 * Azure Native Qumulo (ANQ) as a source store: the replicated archive read through the
 * cluster's S3 API, behind the same SourceStore interface as the landing container.
 *
 * What the Qumulo documentation says and this adapter follows (Azure administrator guide, "S3
 * API: Supported Functionality and Known Limits"; docs.qumulo.com/azure-administrator-guide/
 * s3-api/supported-s3-functionality-known-limits.html):
 * - path-style bucket addressing only, SigV4 single-chunk signing only (so the SDK's flexible
 *   checksums, which sign aws-chunked bodies, are turned off), no temporary credentials;
 * - GetObject (with Range), HeadObject and ListObjectsV2 are supported; a bucket is a directory
 *   and an object's key is its path relative to that directory;
 * - "Qumulo objects have one object version. To preserve previous object contents, use
 *   snapshots": there is no S3 versionId to pin a read to.
 *
 * A snapshot version is therefore addressed by path: every directory of a Qumulo file system
 * reaches its snapshots by name through the `.snapshot` directory (the name being the
 * snapshot's `name` from `GET /v3/snapshots/`, "as it appears in the .snapshot directory"), so
 * the object `<key>` as of snapshot S is `.snapshot/<S.name>/<key>` under the bucket root.
 * (To be confirmed on a cluster whose snapshot directory mode is visible or hidden; the REST
 * `GET /v1/files/{ref}/data?snapshot=` read is the documented alternative.)
 *
 * Object names given to this store:
 * - `<key>`: the live object (ANQ_READ_FROM=head), pinned by its ETag, as on the blob path;
 * - `.snapshot/<id>/<key>` (see anqObjectName): the file as of the newest snapshot whose id is
 *   at least `<id>`, the snapshot the event named. Reading the newest rather than exactly the
 *   named one keeps ingestion level-triggered: a late or repeated event for an older snapshot
 *   reads the file as it is now replicated, never a stale version, and a snapshot that expired
 *   since the event does not make the file look deleted. A read never sees the live tree that
 *   replication may still be writing.
 *
 * The version pin is the ETag together with the snapshot chosen when the file was opened:
 * later ranges of that version are read from the same snapshot with If-Match, and the answer's
 * ETag is compared too (some S3 servers ignore If-Match on GET), so a change surfaces as
 * SOURCE_CHANGED exactly as on the blob path. A missing object is undefined / SOURCE_NOT_FOUND.
 */
import { Readable } from 'node:stream';

import { GetObjectCommand, GetObjectCommandOutput, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';

import { anqObjectName, parseAnqObjectName, SNAPSHOT_PREFIX } from '../anq/objectNames';
import type { AnqSettings } from '../config/anqSettings';
import { ErrorCodes, fromServiceError, PipelineError } from '../errors';
import { Lru } from '../lru';
import { OpenedSource, SourceProperties, SourceStore, totalOfContentRange } from './stores';

export { anqObjectName, parseAnqObjectName };

/** Resolves the snapshot a read is made from. */
export interface SnapshotResolver {
  /**
   * The newest snapshot (id and `.snapshot` directory name) whose id is at least `floorId`, or
   * undefined when there is none. Throws SERVICE_* on faults. Idempotent.
   */
  newestFrom(floorId: number, options?: { abortSignal?: AbortSignal }): Promise<{ id: number; name: string } | undefined>;
}

/** The AWS SDK's documented switch for its Node.js version notice (aws/aws-sdk-js-v3 issue 7983). */
const NODE_SUPPORT_WARNING_SWITCH = 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED';

/**
 * Makes an S3 client without the SDK's notice that its versions published after January 2027
 * need Node.js 22: the SDK version here is pinned, so on Node 20 the notice says nothing about
 * this deployment and only buries the start-up log. The switch is set for the construction
 * alone (the SDK reads it there, once per process) and left as it was, so no other warning is
 * hidden; an operator who sets it either way keeps the choice.
 */
export function withoutNodeSupportNotice<T>(make: () => T): T {
  if (process.env[NODE_SUPPORT_WARNING_SWITCH] !== undefined) return make();
  process.env[NODE_SUPPORT_WARNING_SWITCH] = 'true';
  try {
    return make();
  } finally {
    delete process.env[NODE_SUPPORT_WARNING_SWITCH];
  }
}

/** An S3 client as the Qumulo S3 API takes it. */
export function anqS3Client(s3: AnqSettings['s3']): S3Client {
  return withoutNodeSupportNotice(() => new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    maxAttempts: 3,
    // Flexible checksums would send aws-chunked (streaming SigV4) bodies and x-amz-checksum-mode;
    // Qumulo takes single-chunk SigV4 only.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  }));
}

function statusOf(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

/** An AWS SDK failure as a PipelineError, classified by the status the service answered. */
function s3Error(e: unknown, what: string): PipelineError {
  if (e instanceof PipelineError) return e;
  const status = statusOf(e);
  if (status === 412) return new PipelineError(ErrorCodes.SOURCE_CHANGED, 'ANQ source file changed while it was read', { cause: e });
  if (status === 404) return new PipelineError(ErrorCodes.SOURCE_NOT_FOUND, 'ANQ source file no longer exists', { cause: e });
  if (status !== undefined) return fromServiceError(Object.assign(new Error(`S3 answered ${status}`), { statusCode: status, cause: e }), what);
  return fromServiceError(e, what);
}

async function* wrapStreamErrors(stream: Readable): AsyncGenerator<Uint8Array> {
  try {
    for await (const chunk of stream) yield chunk as Uint8Array;
  } catch (e) {
    throw s3Error(e, 'reading ANQ source file');
  }
}

async function* noBytes(): AsyncGenerator<Uint8Array> {
  // An empty file.
}

const unquoted = (etag: string | undefined) => (etag ?? '').replace(/"/g, '');

/** Responses up to this size are read to the end when dropped; larger ones close their connection. */
const DISCARD_BY_READING_MAX = 1024 * 1024;
/** Versions opened and not yet read to the end whose snapshot is remembered. */
const PINS_MAX = 4096;

export class AnqSourceStore implements SourceStore {
  /** `bucket\0name\0etag` → the snapshot directory name that version was found in. */
  private readonly pins = new Lru<string>(PINS_MAX);

  constructor(
    private readonly client: S3Client,
    private readonly snapshots?: SnapshotResolver,
  ) {}

  /** The S3 key to read for an object name; `pinned` is the snapshot a version was opened from. */
  private async keyFor(name: string, pinned: string | undefined, options: { abortSignal?: AbortSignal }): Promise<{ key: string; snapshot?: string } | undefined> {
    const { key, snapshotFloor } = parseAnqObjectName(name);
    if (snapshotFloor === undefined) return { key };
    if (pinned) return { key: `${SNAPSHOT_PREFIX}${pinned}/${key}`, snapshot: pinned };
    if (!this.snapshots) throw new PipelineError(ErrorCodes.CONFIG_INVALID, 'ANQ snapshot reads need the REST API (ANQ_REST_ENDPOINT)');
    const snap = await this.snapshots.newestFrom(snapshotFloor, options);
    // The snapshot the event named, and every later one, is gone: the file cannot be read as replicated.
    if (!snap) return undefined;
    return { key: `${SNAPSHOT_PREFIX}${snap.name}/${key}`, snapshot: snap.name };
  }

  private pin(bucket: string, name: string, etag: string, snapshot: string | undefined): void {
    if (!snapshot) return;
    const id = `${bucket}\0${name}\0${unquoted(etag)}`;
    this.pins.set(id, snapshot);
  }

  async getProperties(bucket: string, name: string, options: { abortSignal?: AbortSignal } = {}): Promise<SourceProperties | undefined> {
    const target = await this.keyFor(name, undefined, options);
    if (!target) return undefined;
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: target.key }), { abortSignal: options.abortSignal });
      const props = { etag: r.ETag ?? '', size: r.ContentLength ?? 0, lastModified: r.LastModified ?? new Date(0), contentType: r.ContentType };
      this.pin(bucket, name, props.etag, target.snapshot);
      return props;
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw s3Error(e, 'reading ANQ source file properties');
    }
  }

  async open(bucket: string, name: string, count: number, options: { abortSignal?: AbortSignal } = {}): Promise<OpenedSource | undefined> {
    const target = await this.keyFor(name, undefined, options);
    if (!target) return undefined;
    let r: GetObjectCommandOutput;
    try {
      // No condition: the answer's ETag names the version these bytes belong to.
      r = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: target.key, Range: `bytes=0-${Math.max(count, 1) - 1}` }), { abortSignal: options.abortSignal });
    } catch (e) {
      const status = statusOf(e);
      if (status === 404) return undefined;
      // An empty file has no first byte to give: its properties come from a HEAD.
      if (status === 416) {
        const props = await this.getProperties(bucket, name, options);
        return props && { props, head: noBytes(), discard: () => undefined };
      }
      throw s3Error(e, 'reading ANQ source file');
    }
    const body = r.Body as Readable | undefined;
    if (!body) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'S3 GetObject returned no body');
    const headBytes = r.ContentLength ?? 0;
    const props: SourceProperties = {
      etag: r.ETag ?? '',
      size: totalOfContentRange(r.ContentRange) ?? headBytes,
      lastModified: r.LastModified ?? new Date(0),
      contentType: r.ContentType,
    };
    this.pin(bucket, name, props.etag, target.snapshot);
    // An empty file has no bytes to stream, whatever the server says its range is (s3rver
    // answers "bytes 0-0/0" with a length of 1 and no body).
    if (props.size === 0) {
      body.destroy();
      return { props, head: noBytes(), discard: () => undefined };
    }
    return {
      props,
      head: wrapStreamErrors(body),
      discard: () => (headBytes <= DISCARD_BY_READING_MAX ? body.resume() : body.destroy()),
    };
  }

  /** No bytes when the object is still the empty version `etag`; SOURCE_CHANGED otherwise. */
  private async emptyIfStill(bucket: string, key: string, etag: string, options: { abortSignal?: AbortSignal }): Promise<AsyncIterable<Uint8Array>> {
    let head;
    try {
      head = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: options.abortSignal });
    } catch (e) {
      throw s3Error(e, 'reading ANQ source file properties');
    }
    if (unquoted(head.ETag) !== unquoted(etag) || (head.ContentLength ?? 0) !== 0) throw new PipelineError(ErrorCodes.SOURCE_CHANGED, 'ANQ source file changed while it was read');
    return noBytes();
  }

  async readRange(bucket: string, name: string, etag: string, offset: number, count: number | undefined, options: { abortSignal?: AbortSignal } = {}): Promise<AsyncIterable<Uint8Array>> {
    const pinned = this.pins.get(`${bucket}\0${name}\0${unquoted(etag)}`);
    const target = await this.keyFor(name, pinned, options);
    if (!target) throw new PipelineError(ErrorCodes.SOURCE_NOT_FOUND, 'ANQ source file no longer exists in any snapshot');
    const range = count === undefined ? `bytes=${offset}-` : `bytes=${offset}-${offset + Math.max(count, 1) - 1}`;
    let r: GetObjectCommandOutput;
    try {
      r = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: target.key, Range: range, IfMatch: etag }), { abortSignal: options.abortSignal });
    } catch (e) {
      // The snapshot this version was opened from expired meanwhile: that version can no longer
      // be read, which is a change (the caller reads the file's current properties again and
      // finds it in a newer snapshot, or gone), not a deletion.
      if (pinned && statusOf(e) === 404) {
        this.pins.delete(`${bucket}\0${name}\0${unquoted(etag)}`);
        throw new PipelineError(ErrorCodes.SOURCE_CHANGED, 'the ANQ snapshot this version was read from is gone', { cause: e });
      }
      // An empty file has no byte 0: the whole of it is no bytes, if it is still the version asked for.
      if (offset === 0 && statusOf(e) === 416) return this.emptyIfStill(bucket, target.key, etag, options);
      throw s3Error(e, 'reading ANQ source file');
    }
    const body = r.Body as Readable | undefined;
    if (!body) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'S3 GetObject returned no body');
    if (unquoted(r.ETag) !== unquoted(etag)) {
      body.destroy();
      throw new PipelineError(ErrorCodes.SOURCE_CHANGED, 'ANQ source file changed while it was read');
    }
    // s3rver answers a range of an empty object with "bytes 0-0/0", a length of 1 and no body:
    // waiting for that byte would hang until the server drops the connection.
    if (totalOfContentRange(r.ContentRange) === 0) {
      body.destroy();
      return noBytes();
    }
    return wrapStreamErrors(body);
  }
}

/** One file of a listing. */
export interface AnqListedFile {
  /** The key relative to the bucket root (never the `.snapshot/...` part). */
  key: string;
  etag: string;
  size: number;
  lastModified: Date;
}

/** One page of a listing: its files, and where the next page starts. */
export interface AnqListedPage {
  files: AnqListedFile[];
  /** The last key of the page relative to the bucket root (directories included), for StartAfter; undefined when the page is empty. */
  lastKey?: string;
  /** The token of the next page, or undefined on the last page. */
  continuationToken?: string;
  /** True when no key follows this page. */
  done: boolean;
}

/**
 * One page of the files under a prefix of the bucket (ListObjectsV2), as of a snapshot (by its
 * `.snapshot` directory name) or the live tree, in key order. It starts at a continuation token
 * or after a key (StartAfter, which survives a restart: a checkpoint keeps the key, never the
 * opaque token). Directory objects (keys ending in `/`, as Qumulo lists directories) are left
 * out. Throws PipelineError SERVICE_* on faults.
 */
export async function listAnqPage(
  client: S3Client,
  bucket: string,
  prefix: string,
  options: { snapshotName?: string; startAfter?: string; continuationToken?: string; abortSignal?: AbortSignal; pageSize?: number } = {},
): Promise<AnqListedPage> {
  const root = options.snapshotName ? `${SNAPSHOT_PREFIX}${options.snapshotName}/` : '';
  let page;
  try {
    page = await client.send(
      new ListObjectsV2Command({
        Bucket: bucket,
        Prefix: `${root}${prefix}`,
        ContinuationToken: options.continuationToken,
        StartAfter: options.continuationToken === undefined && options.startAfter !== undefined ? `${root}${options.startAfter}` : undefined,
        MaxKeys: options.pageSize ?? 1000,
      }),
      { abortSignal: options.abortSignal },
    );
  } catch (e) {
    throw s3Error(e, 'listing ANQ files');
  }
  const files: AnqListedFile[] = [];
  let lastKey: string | undefined;
  for (const o of page.Contents ?? []) {
    if (!o.Key) continue;
    lastKey = o.Key.slice(root.length);
    if (o.Key.endsWith('/')) continue;
    // The live tree's listing must not wander into the snapshot directory.
    if (!root && o.Key.startsWith(SNAPSHOT_PREFIX)) continue;
    files.push({ key: o.Key.slice(root.length), etag: o.ETag ?? '', size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) });
  }
  const continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
  return { files, lastKey, continuationToken, done: continuationToken === undefined };
}

/**
 * Lists the files under a prefix of the bucket, page after page (see listAnqPage): what a
 * periodic reconciliation behind the change-notification stream walks.
 */
export async function* listAnqFiles(client: S3Client, bucket: string, prefix: string, options: { snapshotName?: string; abortSignal?: AbortSignal; pageSize?: number } = {}): AsyncGenerator<AnqListedFile> {
  let continuationToken: string | undefined;
  do {
    const page = await listAnqPage(client, bucket, prefix, { ...options, continuationToken });
    yield* page.files;
    continuationToken = page.continuationToken;
  } while (continuationToken);
}

/**
 * Snapshots from the REST API, listed at most every `ttlMs`: a floor newer than the cached
 * list lists again, so an event is never read from a snapshot older than the one it names.
 */
export class RestSnapshotResolver implements SnapshotResolver {
  private cached: { at: number; snapshots: { id: number; name: string }[] } | undefined;

  constructor(
    private readonly list: (options: { abortSignal?: AbortSignal }) => Promise<{ id: number; name: string; source_file_id: string }[]>,
    /** Snapshots of this directory (or of one that contains it) are the export's: its file id, or undefined for all. */
    private readonly covers: (snapshot: { source_file_id: string }) => boolean = () => true,
    private readonly ttlMs = 5_000,
    private readonly now: () => number = Date.now,
  ) {}

  async newestFrom(floorId: number, options: { abortSignal?: AbortSignal } = {}): Promise<{ id: number; name: string } | undefined> {
    const fresh = this.cached && this.now() - this.cached.at < this.ttlMs ? this.cached : undefined;
    let snapshots = fresh?.snapshots;
    if (!snapshots || (snapshots.at(-1)?.id ?? -1) < floorId) {
      const listed = (await this.list(options)).filter((s) => this.covers(s)).map((s) => ({ id: s.id, name: s.name })).sort((a, b) => a.id - b.id);
      this.cached = { at: this.now(), snapshots: listed };
      snapshots = listed;
    }
    const newest = snapshots.at(-1);
    return newest && newest.id >= floorId ? newest : undefined;
  }
}
