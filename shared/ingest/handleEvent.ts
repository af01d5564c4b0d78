/**
 * From one delivered event to one ingestion: decode, check the URL, bound concurrency, run
 * the use case. Resolves when the event is done with (processed, recorded as failed, or
 * deliberately ignored); rejects only when a retry may help.
 *
 * Event Grid delivers an event again when the first delivery is not answered within 30 s, and a
 * large file takes longer than that to ingest (a 2 GB multi-frame file about two minutes here).
 * A delivery of an event whose ingestion is still running in this process, or of another event
 * for the same version of the same file, joins that ingestion and answers with its outcome: the
 * file is read, de-identified and written once, not once per delivery.
 */
import { isPipelineError } from '../errors';
import { type AnqScope, parseIncomingEvent, resolveRequestSource } from '../events/ingestEvents';
import type { SingleFlight } from '../singleFlight';
import type { Telemetry } from '../telemetry/telemetry';
import { IngestDeps, IngestOutcome, ingestSourceFile, Logger } from './ingestSourceFile';
import type { Limiter } from './limiter';

export type EventOutcome = IngestOutcome | { status: 'ignored' | 'refused' | 'invalid'; reason: string };

/** What handling an event needs of the process it runs in (the runtime provides it; a test may hand in another). */
export interface EventDeps {
  /** Blob endpoints of the source account(s): event URLs must point inside them. */
  sourceBlobEndpoints: string[];
  /** The ANQ export: `anq://` URLs must point inside its export and prefix (refused when undefined). */
  anqScope?: AnqScope;
  settings: { sourceContainers: string[] };
  telemetry: Pick<Telemetry, 'trackFailure'>;
  /** Bounds the ingestions running at once; shared by every event this process handles. */
  ingestions: Limiter;
  /** The ingestions running in this process, by event or file version: a delivery again joins its own. */
  deliveries: SingleFlight<IngestOutcome>;
  ingestDeps(log: Logger): IngestDeps;
}

export async function handleIngestEvent(event: unknown, deps: EventDeps, log: Logger): Promise<EventOutcome> {
  let parsed;
  try {
    parsed = parseIncomingEvent(event);
  } catch (e) {
    if (!isPipelineError(e)) throw e;
    // A malformed event can never succeed: say so and let it go, rather than retry it forever.
    log.warn(`event rejected: ${e.message}`);
    return { status: 'invalid', reason: e.message };
  }
  if (parsed.kind === 'ignored') {
    log.info(`event ${parsed.eventId} (${parsed.eventType}) ignored: ${parsed.reason}`);
    return { status: 'ignored', reason: parsed.reason };
  }
  const { request } = parsed;
  const resolved = resolveRequestSource(request, { blobEndpoints: deps.sourceBlobEndpoints, sourceContainers: deps.settings.sourceContainers, ...(deps.anqScope ? { anq: deps.anqScope } : {}) });
  if (resolved.kind !== 'source') {
    const level = resolved.kind === 'refused' ? 'warn' : 'info';
    log[level](`event ${request.eventId} ${resolved.kind}: ${resolved.reason}`);
    if (resolved.kind === 'refused') deps.telemetry.trackFailure('SOURCE_NOT_ALLOWED', 'ingest');
    return { status: resolved.kind, reason: resolved.reason };
  }
  const { location } = resolved;
  // The file's version when the event names it (two events for one write are one ingestion), else the event itself.
  const key = `${request.kind}\0${location.canonicalUrl}\0${request.etag !== undefined ? `etag ${request.etag}` : `event ${request.eventId}`}`;
  return deps.deliveries.run(key, () => deps.ingestions.run((release, outside) => ingestSourceFile({ ...deps.ingestDeps(log), fileDone: release, outsideSlot: outside }, request, location)));
}
