/**
 * The few Qumulo REST API resources the ANQ source uses, with the request and response shapes
 * of the Qumulo REST API Guide (docs.qumulo.com/rest-api-guide):
 * - `GET /v3/snapshots/?filter=exclude_in_delete` (snapshots/v3_snapshots.html): `{ entries: [{ id:
 *   number, name: string, timestamp: string, source_file_id: string, policy_id: number|null,
 *   expiration: string|null, in_delete: boolean }] }`;
 * - `GET /v2/snapshots/{newer_id}/changes-since/{older_id}?after=&limit=`
 *   (snapshots/v2_snapshots_newer_id_changes-since_older_id.html): `{ entries: [{ op:
 *   "CREATE"|"MODIFY"|"DELETE", path: string }], paging: { next } }`;
 * - `GET /v1/files/{ref}/info/attributes?snapshot=` (files/files_ref_info_attributes.html): the
 *   file's attributes, `size` and `id` as strings, times as RFC 3339 strings.
 * Requests carry a bearer access token (a REST user that may read snapshots and attributes).
 */
import type { AnqSettings } from '../config/anqSettings';
import { ErrorCodes, fromServiceError, PipelineError } from '../errors';

export interface QumuloSnapshot {
  id: number;
  /** The snapshot's directory name under `.snapshot` (Qumulo prepends the id to the name). */
  name: string;
  timestamp: string;
  source_file_id: string;
  policy_id: number | null;
  expiration: string | null;
  in_delete: boolean;
}

export type TreeDiffOp = 'CREATE' | 'MODIFY' | 'DELETE';

export interface TreeDiffEntry {
  op: TreeDiffOp;
  /** Absolute file-system path; a directory's ends with `/`. */
  path: string;
}

export interface TreeDiffPage {
  entries: TreeDiffEntry[];
  /** The `after` key of the next page, or undefined on the last page. */
  after?: string;
}

export interface QumuloFileAttributes {
  path: string;
  name: string;
  type: string;
  id: string;
  file_number: string;
  size: string;
  modification_time: string;
  change_time: string;
  creation_time: string;
  data_revision?: string;
}

/** What the watcher and the source adapter need from the cluster's REST API. */
export interface QumuloApi {
  /** Snapshots that are not being deleted, oldest first. Throws SERVICE_* on faults. Idempotent. */
  listSnapshots(options?: { abortSignal?: AbortSignal }): Promise<QumuloSnapshot[]>;
  /**
   * One page of the tree diff between two snapshots. Throws NOT_FOUND when either snapshot is
   * gone, SERVICE_* on faults. Idempotent for the same `after`.
   */
  changesSince(newerId: number, olderId: number, after: string | undefined, options?: { limit?: number; abortSignal?: AbortSignal }): Promise<TreeDiffPage>;
  /** A file's attributes (as of a snapshot, or the head), or undefined when it does not exist there. */
  attributes(path: string, snapshotId?: number, options?: { abortSignal?: AbortSignal }): Promise<QumuloFileAttributes | undefined>;
}

/** Paths are URL-encoded as a whole in `{ref}` (the guide: "You must URL-encode the paths"). */
export function fileRef(path: string): string {
  return encodeURIComponent(path);
}

/** The `after` key inside a `paging.next` link such as `/v2/snapshots/3/changes-since/2?after=abc&limit=1000`. */
export function afterOfNext(next: unknown): string | undefined {
  if (typeof next !== 'string' || next === '') return undefined;
  const q = next.indexOf('?');
  if (q < 0) return undefined;
  return new URLSearchParams(next.slice(q + 1)).get('after') ?? undefined;
}

export class QumuloRestClient implements QumuloApi {
  constructor(
    private readonly endpoint: string,
    private readonly token: string,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  private async get(path: string, what: string, options: { abortSignal?: AbortSignal } = {}): Promise<unknown | undefined> {
    let res: Response;
    try {
      res = await this.fetchImpl(`${this.endpoint}${path}`, {
        headers: { authorization: `Bearer ${this.token}`, accept: 'application/json' },
        signal: options.abortSignal ?? AbortSignal.timeout(30_000),
      });
    } catch (e) {
      throw fromServiceError(e, what);
    }
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw fromServiceError({ statusCode: res.status }, what);
    }
    try {
      return await res.json();
    } catch (e) {
      throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, `${what}: the answer is not JSON`, { cause: e });
    }
  }

  async listSnapshots(options: { abortSignal?: AbortSignal } = {}): Promise<QumuloSnapshot[]> {
    const body = (await this.get('/v3/snapshots/?filter=exclude_in_delete', 'listing ANQ snapshots', options)) as { entries?: QumuloSnapshot[] } | undefined;
    if (!body || !Array.isArray(body.entries)) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'listing ANQ snapshots: no entries in the answer');
    return body.entries.filter((s) => !s.in_delete).sort((a, b) => a.id - b.id);
  }

  async changesSince(newerId: number, olderId: number, after: string | undefined, options: { limit?: number; abortSignal?: AbortSignal } = {}): Promise<TreeDiffPage> {
    const q = new URLSearchParams();
    if (after !== undefined) q.set('after', after);
    if (options.limit !== undefined) q.set('limit', String(options.limit));
    const qs = q.toString();
    const query = qs ? `?${qs}` : '';
    const body = (await this.get(`/v2/snapshots/${newerId}/changes-since/${olderId}${query}`, 'diffing ANQ snapshots', options)) as
      | { entries?: TreeDiffEntry[]; paging?: { next?: unknown } }
      | undefined;
    if (!body) throw new PipelineError(ErrorCodes.NOT_FOUND, `diffing ANQ snapshots: snapshot ${newerId} or ${olderId} no longer exists`);
    if (!Array.isArray(body.entries)) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'diffing ANQ snapshots: no entries in the answer');
    return { entries: body.entries, after: afterOfNext(body.paging?.next) };
  }

  async attributes(path: string, snapshotId?: number, options: { abortSignal?: AbortSignal } = {}): Promise<QumuloFileAttributes | undefined> {
    const query = snapshotId === undefined ? '' : `?snapshot=${snapshotId}`;
    return (await this.get(`/v1/files/${fileRef(path)}/info/attributes${query}`, 'reading ANQ file attributes', options)) as QumuloFileAttributes | undefined;
  }
}

/** `/a/b` → `/`, `/a/`, `/a/b/`: the directories whose snapshots hold the export. */
export function exportAndAncestors(exportPath: string): string[] {
  const parts = exportPath.split('/').filter(Boolean);
  return ['/', ...parts.map((_, i) => `/${parts.slice(0, i + 1).join('/')}/`)];
}

/** The file ids of the export and its ancestors (the source_file_id of the snapshots that cover it). */
export async function coveringSnapshotSources(api: QumuloApi, anq: Pick<AnqSettings, 'exportPath'>): Promise<string[]> {
  const dirs = exportAndAncestors(anq.exportPath);
  const exportDir = dirs.pop() as string;
  const exported = await api.attributes(exportDir);
  if (!exported) throw new PipelineError(ErrorCodes.CONFIG_INVALID, 'ANQ_EXPORT_PATH does not name a directory the REST user can read');
  const ids = [exported.id];
  // An ancestor the REST user may not read (or that does not answer) is left out: its snapshots are not read from.
  for (const dir of dirs) {
    const attrs = await api.attributes(dir).catch(() => undefined);
    if (attrs) ids.push(attrs.id);
  }
  return ids;
}

/**
 * One notification of the change-notification stream (`GET /v1/files/{ref}/notify`, REST API
 * Guide files/files_ref_notify.html; payload as in the administrator guide,
 * watching-file-attribute-directory-changes/rest.html): `path` is relative to the watched directory.
 */
export interface QumuloNotification {
  type: string;
  path: string;
  spine?: string[];
  stream_name: string | null;
}

/** What the stream gives: first that the watch is registered, then lists of notifications. */
export type NotifyStreamItem = { kind: 'registered' } | { kind: 'notifications'; notifications: QumuloNotification[] };

/** The change-notification stream of a directory. */
export interface QumuloNotifyApi {
  /**
   * Watches a directory (recursively) and yields what the stream carries. Never ends normally:
   * when the cluster drops the stream (the client fell behind: an `error` event) or the
   * connection ends, it throws PipelineError SERVICE_UNAVAILABLE; 401/403 and 404 as
   * fromServiceError maps them. Aborting ends it with the abort's error.
   */
  notifications(dirPath: string, options: { filter?: string[]; abortSignal?: AbortSignal }): AsyncIterable<NotifyStreamItem>;
}

/** Splits an SSE body into events (HTML Living Standard, "server-sent events"): `event` name, `data` joined, comments flagged. */
async function* sseEvents(body: AsyncIterable<Uint8Array>): AsyncGenerator<{ event?: string; data?: string; comment: boolean }> {
  const decoder = new TextDecoder();
  let buffer = '';
  let event: string | undefined;
  let data: string[] = [];
  let comment = false;
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    for (let nl = buffer.search(/\r?\n/); nl >= 0; nl = buffer.search(/\r?\n/)) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer[nl] === '\r' ? 2 : 1));
      if (line === '') {
        if (data.length > 0 || comment) yield { ...(event !== undefined ? { event } : {}), ...(data.length > 0 ? { data: data.join('\n') } : {}), comment: comment && data.length === 0 };
        event = undefined;
        data = [];
        comment = false;
      } else if (line.startsWith(':')) comment = true;
      else {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
    }
  }
}

export class QumuloNotifyClient implements QumuloNotifyApi {
  constructor(
    private readonly endpoint: string,
    private readonly token: string,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  async *notifications(dirPath: string, options: { filter?: string[]; abortSignal?: AbortSignal }): AsyncGenerator<NotifyStreamItem> {
    const q = new URLSearchParams({ recursive: 'true' });
    if (options.filter?.length) q.set('filter', options.filter.join(','));
    const what = 'watching ANQ change notifications';
    let res: Response;
    try {
      res = await this.fetchImpl(`${this.endpoint}/v1/files/${fileRef(dirPath)}/notify?${q.toString()}`, {
        headers: { authorization: `Bearer ${this.token}`, accept: 'text/event-stream' },
        ...(options.abortSignal ? { signal: options.abortSignal } : {}),
      });
    } catch (e) {
      throw fromServiceError(e, what);
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw fromServiceError({ statusCode: res.status }, what);
    }
    let registered = false;
    try {
      for await (const e of sseEvents(res.body)) {
        if (e.event === 'error') {
          let cls = 'unknown';
          try {
            cls = String((JSON.parse(e.data ?? '{}') as { error_class?: unknown }).error_class ?? cls);
          } catch {
            // an error whose body is not JSON is still the end of the stream
          }
          throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, `${what}: the cluster dropped the stream (${cls})`);
        }
        if (!registered && (e.comment || e.data !== undefined)) {
          registered = true;
          yield { kind: 'registered' };
        }
        if (e.data === undefined) continue;
        let list: unknown;
        try {
          list = JSON.parse(e.data);
        } catch (err) {
          throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, `${what}: an event is not JSON`, { cause: err });
        }
        if (!Array.isArray(list)) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, `${what}: an event is not a list of notifications`);
        yield { kind: 'notifications', notifications: list.filter((n): n is QumuloNotification => typeof (n as QumuloNotification)?.type === 'string' && typeof (n as QumuloNotification)?.path === 'string') };
      }
    } catch (e) {
      if (options.abortSignal?.aborted) throw options.abortSignal.reason;
      throw e instanceof PipelineError ? e : fromServiceError(e, what);
    } finally {
      await res.body.cancel().catch(() => undefined);
    }
    throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, `${what}: the stream ended`);
  }
}
