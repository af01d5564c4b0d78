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
import { feedLiveAgreements } from '../shared/sharing/sharing';
import { withdrawSharedInstance } from './withdrawSharedInstance';

const UID = /^[0-9]+(\.[0-9]+)*$/;

export async function shareCatalogedInstance(event: EventGridEvent, context: InvocationContext): Promise<void> {
  // Locally the topic has one endpoint, this function's (local/stack.ts liveSharing); in Azure
  // withdrawSharedInstance has its own subscription and this one filters on InstanceCataloged.
  if (event.eventType === INSTANCE_WITHDRAWN) return withdrawSharedInstance(event, context);
  if (event.eventType !== INSTANCE_CATALOGED) {
    context.log(`event ${event.id}: ${event.eventType} ignored`);
    return;
  }
  const data = event.data as Record<string, unknown> | undefined;
  const uids = ['studyInstanceUid', 'seriesInstanceUid', 'sopInstanceUid'].map((k) => data?.[k]);
  if (!uids.every((u) => typeof u === 'string' && u.length <= 64 && UID.test(u))) {
    // Never redelivered: no retry can make it valid.
    context.warn(`event ${event.id}: ${new PipelineError(ErrorCodes.EVENT_INVALID, 'not a cataloged instance').message}`);
    return;
  }
  const [studyInstanceUid, seriesInstanceUid, sopInstanceUid] = uids as string[];
  const fed = await feedLiveAgreements((await runtime()).sharing, { studyInstanceUid: studyInstanceUid as string, seriesInstanceUid: seriesInstanceUid as string, sopInstanceUid: sopInstanceUid as string });
  context.log(`event ${event.id}: fed to ${fed.length} live agreement(s)`);
}

app.eventGrid('shareCatalogedInstance', { handler: shareCatalogedInstance });
