/**
 * Event Grid trigger: a file replicated into the archive's landing container (BlobCreated,
 * BlobDeleted, or VNA.Archive.FileReplicated from a notifier on the ANQ side), in either the
 * Event Grid schema or CloudEvents 1.0. Throwing makes Event Grid redeliver, so only
 * transient faults are thrown; a file that can never succeed is recorded and the call returns.
 */
import { app, EventGridEvent, InvocationContext } from '@azure/functions';

import { handleIngestEvent } from '../shared/ingest/handleEvent';
import type { Logger } from '../shared/ingest/ingestSourceFile';
import { runtime } from '../shared/runtime';

export function contextLogger(context: InvocationContext): Logger {
  return { info: (m) => context.info(m), warn: (m) => context.warn(m), error: (m) => context.error(m) };
}

export async function ingestReplicatedFile(event: EventGridEvent, context: InvocationContext): Promise<void> {
  const outcome = await handleIngestEvent(event, await runtime(), contextLogger(context));
  context.info(`event ${String((event as { id?: unknown }).id ?? '')}: ${outcome.status}`);
}

app.eventGrid('ingestReplicatedFile', { handler: ingestReplicatedFile });
