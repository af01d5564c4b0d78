/**
 * Incoming events: Event Grid schema or CloudEvents 1.0, from Blob Storage or from a notifier
 * on the archive side. Each becomes an IngestRequest naming one blob; the ingestion then looks
 * at the blob itself, so that what it does depends on the blob's state, not on event order.
 */
import { ErrorCodes, PipelineError } from '../errors';

export const BLOB_CREATED = 'Microsoft.Storage.BlobCreated';
export const BLOB_DELETED = 'Microsoft.Storage.BlobDeleted';
/**
 * Custom event from a notifier on the ANQ side. `data`:
 * `{ "url": "<blob URL>", "site": "<site code>", "replicatedAt": "<ISO time>", "size": <bytes> }`.
 */
export const FILE_REPLICATED = 'VNA.Archive.FileReplicated';
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
      if (!url) throw new PipelineError(ErrorCodes.EVENT_INVALID, `${eventType} event ${eventId} has no data.url`);
      return {
        kind: 'ingest',
        request: {
          kind: eventType === BLOB_DELETED ? 'deleted' : 'created',
          eventId,
          eventType,
          eventTime,
          url,
          site: str(data.site),
          ...(str(data.eTag) ? { etag: str(data.eTag) } : {}),
        },
      };
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
