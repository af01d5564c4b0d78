/**
 * Incoming events: Event Grid schema or CloudEvents 1.0, from Blob Storage or from the
 * snapshot-diff watcher on the ANQ side. Each becomes an IngestRequest naming one source file
 * (a blob, or a file of the ANQ export); the ingestion then looks at the file itself, so that
 * what it does depends on the file's state, not on event order.
 */
import { anqContainer, anqObjectName } from '../anq/objectNames';
import { ErrorCodes, PipelineError } from '../errors';

export const BLOB_CREATED = 'Microsoft.Storage.BlobCreated';
export const BLOB_DELETED = 'Microsoft.Storage.BlobDeleted';
/**
 * A file replicated into the archive. From a notifier writing to a landing container, `data`:
 * `{ "url": "<blob URL>", "site": "<site code>", "replicatedAt": "<ISO time>", "size": <bytes> }`.
 * From the ANQ snapshot-diff watcher (shared/anq/watcher.ts), a CloudEvent whose `data` is
 * AnqFileEventData: `url` in the `anq://<cluster>/<file-system path>` form, and the snapshot.
 */
export const FILE_REPLICATED = 'VNA.Archive.FileReplicated';
/** A file deleted from the ANQ export (the watcher's tree diff said DELETE); `data` as above. */
export const FILE_DELETED = 'VNA.Archive.FileDeleted';

/** What the ANQ watcher's events carry (`data`). */
export interface AnqFileEventData {
  /** `anq://<cluster>/<file-system path>`, each path segment percent-encoded. */
  url: string;
  /** The absolute file-system path, as the REST API's tree diff reports it. */
  path: string;
  /** Bytes, as of the snapshot (for a deletion, as of the last snapshot that had the file; null when unknown). */
  size: number | null;
  /** Modification time, RFC 3339 (null when unknown). */
  mtime: string | null;
  /** The snapshot the change was seen in (the newer one of the diff); absent from the notify-mode watcher's events, which name the live file. */
  snapshotId?: number;
  snapshotName?: string;
  /** The notify-mode watcher's events: the live version's S3 ETag (for a deletion, the last one published). */
  etag?: string;
}
export const SUBSCRIPTION_VALIDATION = 'Microsoft.EventGrid.SubscriptionValidationEvent';

export interface IngestRequest {
  kind: 'created' | 'deleted';
  eventId: string;
  eventType: string;
  eventTime?: string;
  url: string;
  /** Blob events' sequencer, or the notifier's site, for the record only. */
  site?: string;
  /** The blob version the event was raised for (BlobCreated's `data.eTag`), when it says. */
  etag?: string;
  /** ANQ events: the snapshot the change was seen in; the file is read as of it or a newer one. */
  snapshotId?: number;
}

export type ParsedEvent =
  | { kind: 'ingest'; request: IngestRequest }
  | { kind: 'ignored'; eventId: string; eventType: string; reason: string };

/** Both schemas as delivered: Event Grid (`eventType`, `subject`, `data`) or CloudEvents (`type`, `source`, `data`). */
export interface IncomingEvent {
  id?: unknown;
  eventType?: unknown;
  type?: unknown;
  eventTime?: unknown;
  time?: unknown;
  data?: unknown;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

/** Reads one event. Throws EVENT_INVALID when it is not an event at all. */
export function parseIncomingEvent(event: unknown): ParsedEvent {
  if (typeof event !== 'object' || event === null) throw new PipelineError(ErrorCodes.EVENT_INVALID, 'event is not an object');
  const e = event as IncomingEvent;
  const eventId = str(e.id) ?? '';
  const eventType = str(e.eventType) ?? str(e.type) ?? '';
  const eventTime = str(e.eventTime) ?? str(e.time);
  if (!eventId || !eventType) throw new PipelineError(ErrorCodes.EVENT_INVALID, 'event has no id or type');
  const data = (typeof e.data === 'object' && e.data !== null ? e.data : {}) as Record<string, unknown>;
  const url = str(data.url);
  switch (eventType) {
    case BLOB_CREATED:
    case BLOB_DELETED:
    case FILE_REPLICATED:
    case FILE_DELETED: {
      if (!url) throw new PipelineError(ErrorCodes.EVENT_INVALID, `${eventType} event ${eventId} has no data.url`);
      const snapshotId = data.snapshotId;
      if (snapshotId !== undefined && snapshotId !== null && !(typeof snapshotId === 'number' && Number.isSafeInteger(snapshotId) && snapshotId >= 0)) {
        throw new PipelineError(ErrorCodes.EVENT_INVALID, `${eventType} event ${eventId} has a data.snapshotId that is not a snapshot id`);
      }
      return {
        kind: 'ingest',
        request: {
          kind: eventType === BLOB_DELETED || eventType === FILE_DELETED ? 'deleted' : 'created',
          eventId,
          eventType,
          eventTime,
          url,
          site: str(data.site),
          ...(str(data.eTag) ? { etag: str(data.eTag) } : {}),
          ...(typeof snapshotId === 'number' ? { snapshotId } : {}),
        },
      };
    }
    default:
      return { kind: 'ignored', eventId, eventType, reason: 'event type is not handled' };
  }
}

export interface SourceLocation {
  /** The URL in canonical form: endpoint, container, blob name encoded segment by segment. */
  canonicalUrl: string;
  container: string;
  blobName: string;
}

export type ResolvedSource =
  | { kind: 'source'; location: SourceLocation }
  | { kind: 'ignored'; reason: string }
  | { kind: 'refused'; reason: string };

export function encodeBlobName(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/');
}

/**
 * Checks that a URL names a blob in one of the configured storage accounts and source
 * containers. A URL outside the accounts is refused: an event must never make the function
 * fetch an arbitrary URL. A blob in another container of the account is ignored.
 */
export function resolveSourceUrl(url: string, blobEndpoints: string[], sourceContainers: string[]): ResolvedSource {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { kind: 'refused', reason: 'URL cannot be parsed' };
  }
  if (u.username || u.password || u.search || u.hash) return { kind: 'refused', reason: 'URL carries credentials, a query or a fragment' };
  for (const endpoint of blobEndpoints) {
    const ep = new URL(endpoint);
    const prefix = ep.pathname.replace(/\/+$/, '');
    if (u.protocol !== ep.protocol || u.host.toLowerCase() !== ep.host.toLowerCase()) continue;
    if (!u.pathname.startsWith(`${prefix}/`)) continue;
    const rest = u.pathname.slice(prefix.length + 1);
    const slash = rest.indexOf('/');
    if (slash <= 0 || slash === rest.length - 1) return { kind: 'refused', reason: 'URL names no blob' };
    let container: string;
    let blobName: string;
    try {
      container = decodeURIComponent(rest.slice(0, slash));
      blobName = rest.slice(slash + 1).split('/').map(decodeURIComponent).join('/');
    } catch {
      return { kind: 'refused', reason: 'URL is not validly encoded' };
    }
    if (blobName.split('/').some((seg) => seg === '..' || seg === '.')) return { kind: 'refused', reason: 'URL has dot segments' };
    if (!sourceContainers.includes(container)) return { kind: 'ignored', reason: 'container is not a configured source container' };
    return {
      kind: 'source',
      location: { canonicalUrl: `${endpoint.replace(/\/+$/, '')}/${container}/${encodeBlobName(blobName)}`, container, blobName },
    };
  }
  return { kind: 'refused', reason: 'URL is outside the configured storage accounts' };
}

/** The configured ANQ export, as the resolver checks events against it. */
export interface AnqScope {
  cluster: string;
  bucket: string;
  /** Absolute file-system path of the bucket root, without a trailing slash ("/" for the root). */
  exportPath: string;
  /** Relative prefix under the export (`""`: all of it). */
  prefix: string;
  /** `head` reads the live file and ignores the event's snapshot. */
  readFrom: 'snapshot' | 'head';
}

/** The canonical URL of an ANQ source file: `anq://<cluster>/<path>`, each segment percent-encoded. */
export function anqSourceUrl(cluster: string, fsPath: string): string {
  return `anq://${cluster}/${encodeBlobName(fsPath.replace(/^\/+/, ''))}`;
}

/**
 * Checks that an `anq://` URL names a file of the configured cluster under the configured
 * export and prefix, and gives the location the ANQ source store reads. Anything else is
 * refused and never read: another cluster, a path outside the export or prefix, dot segments
 * (also encoded), an encoded slash, credentials, a query or a fragment, a directory.
 */
export function resolveAnqUrl(url: string, scope: AnqScope, snapshotId?: number): ResolvedSource {
  // Dot segments are checked on the raw text: URL parsing would resolve them away.
  const raw = /^anq:\/\/[^/?#]*(\/[^?#]*)?/i.exec(url);
  if (!raw) return { kind: 'refused', reason: 'URL is not an anq:// URL' };
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { kind: 'refused', reason: 'URL cannot be parsed' };
  }
  if (u.username || u.password || u.search || u.hash || u.port) return { kind: 'refused', reason: 'URL carries credentials, a port, a query or a fragment' };
  if (u.hostname.toLowerCase() !== scope.cluster.toLowerCase()) return { kind: 'refused', reason: 'URL names another cluster' };
  const rawSegments = (raw[1] ?? '').split('/').slice(1);
  let segments: string[];
  try {
    segments = rawSegments.map(decodeURIComponent);
  } catch {
    return { kind: 'refused', reason: 'URL is not validly encoded' };
  }
  if (segments.some((seg) => seg === '.' || seg === '..' || seg.includes('/') || seg.includes('\0'))) return { kind: 'refused', reason: 'URL has dot segments or encoded slashes' };
  if (segments.length === 0 || segments.slice(0, -1).some((seg) => seg === '')) return { kind: 'refused', reason: 'URL has empty segments' };
  if (segments.at(-1) === '') return { kind: 'refused', reason: 'URL names a directory, not a file' };
  const fsPath = `/${segments.join('/')}`;
  const exportRoot = scope.exportPath === '/' ? '' : scope.exportPath;
  // The prefix is a directory: `dicom` allows `dicom/...`, not `dicom2/...`.
  const allowed = `${exportRoot}/${scope.prefix ? scope.prefix.replace(/\/?$/, '/') : ''}`;
  if (!fsPath.startsWith(allowed)) {
    return { kind: 'refused', reason: 'path is outside the configured ANQ export and prefix' };
  }
  const key = fsPath.slice(exportRoot.length + 1);
  return {
    kind: 'source',
    location: {
      canonicalUrl: anqSourceUrl(scope.cluster, fsPath),
      container: anqContainer(scope.bucket),
      blobName: anqObjectName(key, scope.readFrom === 'snapshot' ? snapshotId : undefined),
    },
  };
}

/**
 * Resolves the file an ingestion request names, whichever source it is on: an `anq://` URL
 * against the ANQ export (refused when the ANQ source is off), any other against the blob
 * accounts and source containers (resolveSourceUrl).
 */
export function resolveRequestSource(
  request: Pick<IngestRequest, 'url' | 'snapshotId'>,
  sources: { blobEndpoints: string[]; sourceContainers: string[]; anq?: AnqScope },
): ResolvedSource {
  if (/^anq:/i.test(request.url)) {
    if (!sources.anq) return { kind: 'refused', reason: 'the ANQ source is not configured' };
    return resolveAnqUrl(request.url, sources.anq, request.snapshotId);
  }
  return resolveSourceUrl(request.url, sources.blobEndpoints, sources.sourceContainers);
}
