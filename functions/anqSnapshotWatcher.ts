/**
 * Timer trigger on the ANQ side: diffs the replication target's new snapshots and publishes
 * one VNA.Archive.FileReplicated / FileDeleted CloudEvent per file changed (shared/anq/watcher.ts).
 * Throwing leaves the checkpoint where it was; the next tick goes on from it. Does nothing
 * when the ANQ source is off (ANQ_S3_ENDPOINT not set).
 */
import { app, InvocationContext, Timer } from '@azure/functions';

import { watchSnapshots } from '../shared/anq/watcher';
import { watcherDeps } from '../shared/anq/watcherRuntime';

export async function anqSnapshotWatcher(_timer: Timer, context: InvocationContext): Promise<void> {
  const deps = await watcherDeps({ info: (m) => context.info(m), warn: (m) => context.warn(m) });
  if (!deps) {
    context.info('ANQ snapshot watcher: the ANQ source is off');
    return;
  }
  const r = await watchSnapshots(deps);
  context.info(
    `ANQ snapshot watcher: ${r.snapshotsDiffed} snapshot(s) diffed, ${r.pages} page(s), ${r.replicated} replicated (${r.backfilled} by the backfill), ${r.deleted} deleted, at snapshot ${r.lastSnapshotId ?? '-'}${r.stoppedEarly ? ', to be continued' : ''}`,
  );
}

// The schedule is read when the app loads (NCRONTAB, seconds first); every minute by default.
app.timer('anqSnapshotWatcher', { schedule: process.env.ANQ_WATCH_SCHEDULE || '0 */1 * * * *', handler: anqSnapshotWatcher });
