/**
 * From one delivered event to one ingestion: decode, check the URL, bound concurrency, run
 * the use case. Resolves when the event is done with (processed, recorded as failed, or
 * deliberately ignored); rejects only when a retry may help.
 */
import { isPipelineError } from '../errors';
import { type AnqScope, parseIncomingEvent, resolveRequestSource } from '../events/ingestEvents';
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
  return deps.ingestions.run((release, outside) => ingestSourceFile({ ...deps.ingestDeps(log), fileDone: release, outsideSlot: outside }, request, resolved.location));
}
