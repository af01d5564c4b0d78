/**
 * The live feed: each VNA.Catalog.InstanceCataloged event (Event Grid subscription on the
 * pipeline's topic) is offered to the active `live` agreements; each whose cohort it matches
 * gets one message on the export queue (shared/sharing/sharing.ts feedLiveAgreements). Faults
 * are rethrown, so that Event Grid delivers the event again.
 */
import { app, type EventGridEvent, type InvocationContext } from '@azure/functions';

import { ErrorCodes, PipelineError } from '../shared/errors';
import { INSTANCE_CATALOGED, INSTANCE_WITHDRAWN } from '../shared/events/publisher';
import { runtime } from '../shared/runtime';
import { researchInstanceOf } from '../shared/sharing/instanceEvent';
import { feedLiveAgreements, withdrawSharedInstance } from '../shared/sharing/sharing';

export async function shareCatalogedInstance(event: EventGridEvent, context: InvocationContext): Promise<void> {
  const withdrawn = event.eventType === INSTANCE_WITHDRAWN;
  if (event.eventType !== INSTANCE_CATALOGED && !withdrawn) {
    context.log(`event ${event.id}: ${event.eventType} ignored`);
    return;
  }
  const instance = researchInstanceOf(event.data);
  if (!instance) {
    // Never redelivered: no retry can make it valid.
    context.warn(`event ${event.id}: ${new PipelineError(ErrorCodes.EVENT_INVALID, withdrawn ? 'not a withdrawn instance' : 'not a cataloged instance').message}`);
    return;
  }
  if (withdrawn) {
    // Locally the topic has one endpoint, this function's (local/stack.ts liveSharing); in Azure
    // withdrawSharedInstance has its own subscription and this one filters on InstanceCataloged.
    const done = await withdrawSharedInstance((await runtime()).sharing, instance);
    context.log(`event ${event.id}: ${done.deleted} partner cop(ies) deleted, ${done.notified} partner(s) notified`);
    return;
  }
  const fed = await feedLiveAgreements((await runtime()).sharing, instance);
  context.log(`event ${event.id}: fed to ${fed.length} live agreement(s)`);
}

app.eventGrid('shareCatalogedInstance', { handler: shareCatalogedInstance });
