/**
 * Timer trigger of data sharing: closes the live agreements' dated parts whose day (UTC) is
 * over, once every instance the part wanted is done or failed: the final manifest, then
 * VNA.Export.Completed with the manifest's location and the counts (shared/sharing/sharing.ts
 * closeLiveParts). The feed and the part's last worker close parts too; the timer is what closes
 * the part of a day after which nothing more arrives. Idempotent; a failure is retried next tick.
 */
import { app, type InvocationContext, type Timer } from '@azure/functions';

import { runtime } from '../shared/runtime';
import { closeLiveParts as closeParts } from '../shared/sharing/sharing';

export async function closeLiveParts(_timer: Timer, context: InvocationContext): Promise<void> {
  const closed = await closeParts((await runtime()).sharing);
  // Part ids name the agreement and the day, never a source.
  if (closed.length > 0) context.info(`closed ${closed.length} live part(s): ${closed.join(', ')}`);
}

// Every 5 minutes (NCRONTAB, seconds first): a part closes within about 10 minutes of its day's end (5 minutes of grace).
app.timer('closeLiveParts', { schedule: '0 */5 * * * *', handler: closeLiveParts });
