/**
 * From one delivered event to one ingestion: decode, check the URL, bound concurrency, run
 * the use case. Resolves when the event is done with (processed, recorded as failed, or
 * deliberately ignored); rejects only when a retry may help.
 */
import { isPipelineError } from '../errors';
import { parseIncomingEvent, resolveSourceUrl } from '../events/ingestEvents';
import type { Runtime } from '../runtime';
import { IngestOutcome, ingestSourceFile, Logger } from './ingestSourceFile';
import { Limiter } from './limiter';

export type EventOutcome = IngestOutcome | { status: 'ignored' | 'refused' | 'invalid'; reason: string };

let limiter: Limiter | undefined;

export async function handleIngestEvent(event: unknown, rt: Runtime, log: Logger): Promise<EventOutcome> {
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
  const resolved = resolveSourceUrl(request.url, rt.sourceBlobEndpoints, rt.settings.sourceContainers);
  if (resolved.kind !== 'source') {
    const level = resolved.kind === 'refused' ? 'warn' : 'info';
    log[level](`event ${request.eventId} ${resolved.kind}: ${resolved.reason}`);
    if (resolved.kind === 'refused') rt.telemetry.trackFailure('SOURCE_NOT_ALLOWED', 'ingest');
    return { status: resolved.kind, reason: resolved.reason };
  }
  limiter ??= new Limiter(rt.settings.maxConcurrentIngestions);
  return limiter.run((release) => ingestSourceFile({ ...rt.ingestDeps(log), fileDone: release }, request, resolved.location));
}
