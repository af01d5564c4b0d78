/**
 * Deletion propagates to partners: each VNA.Catalog.InstanceWithdrawn event (a research instance
 * withdrawn because its source was deleted; Event Grid subscription on the pipeline's topic)
 * withdraws every partner copy of the instance (shared/sharing/sharing.ts
 * withdrawSharedInstance). Faults are rethrown, so that Event Grid delivers the event again.
 */
import { app, type EventGridEvent, type InvocationContext } from '@azure/functions';

import { ErrorCodes, PipelineError } from '../shared/errors';
import { INSTANCE_WITHDRAWN } from '../shared/events/publisher';
import { runtime } from '../shared/runtime';
import { researchInstanceOf } from '../shared/sharing/instanceEvent';
import { withdrawSharedInstance as withdraw } from '../shared/sharing/sharing';

export async function withdrawSharedInstance(event: EventGridEvent, context: InvocationContext): Promise<void> {
  if (event.eventType !== INSTANCE_WITHDRAWN) {
    context.log(`event ${event.id}: ${event.eventType} ignored`);
    return;
  }
  const instance = researchInstanceOf(event.data);
  if (!instance) {
    // Never redelivered: no retry can make it valid.
    context.warn(`event ${event.id}: ${new PipelineError(ErrorCodes.EVENT_INVALID, 'not a withdrawn instance').message}`);
    return;
  }
  const done = await withdraw((await runtime()).sharing, instance);
  context.log(`event ${event.id}: ${done.deleted} partner cop(ies) deleted, ${done.notified} partner(s) notified`);
}

app.eventGrid('withdrawSharedInstance', { handler: withdrawSharedInstance });
