/**
 * Timer trigger on the ANQ side: diffs the replication target's new snapshots and publishes
 * one VNA.Archive.FileReplicated / FileDeleted CloudEvent per file changed (shared/anq/watcher.ts).
 * Throwing leaves the checkpoint where it was; the next tick goes on from it. Does nothing
 * when the ANQ source is off (ANQ_S3_ENDPOINT not set).
 *
 * With ANQ_WATCH_MODE=notify, each run is one session of the notify watcher
 * (shared/anq/notifyWatcher.ts) that holds the change-notification stream for
 * ANQ_WATCH_MAX_RUN_MS. The timer is what makes this sound on Azure: its runs never overlap and
 * hold a singleton lock across instances, so one session at a time owns the stream and the
 * listing state; a run cut short (scale-in, redeploy, time-out) leaves the stored state, and the
 * next tick registers again and reconciles what changed meanwhile.
 */
import { app, InvocationContext, Timer } from '@azure/functions';

import { runNotifySession } from '../shared/anq/notifyWatcher';
import { watchSnapshots } from '../shared/anq/watcher';
import { watcherRun } from '../shared/anq/watcherRuntime';

export async function anqSnapshotWatcher(_timer: Timer, context: InvocationContext): Promise<void> {
  const run = await watcherRun({ info: (m) => context.info(m), warn: (m) => context.warn(m) });
  if (run.mode === 'off') {
    context.info('ANQ snapshot watcher: the ANQ source is off');
    return;
  }
  if (run.mode === 'notify') {
    const n = await runNotifySession(run.deps, { durationMs: run.sessionMs });
    context.info(
      `ANQ notify watcher: ${n.notifications} notification(s), ${n.replicated} replicated, ${n.deleted} deleted (${n.reconciled} by reconciliation, ${n.passes} pass(es)), ${n.streamsLost} stream(s) lost${n.owner ? '' : ', stopped: another session owns the state'}`,
    );
    return;
  }
  const r = await watchSnapshots(run.deps);
  context.info(
    `ANQ snapshot watcher: ${r.snapshotsDiffed} snapshot(s) diffed, ${r.pages} page(s), ${r.replicated} replicated (${r.backfilled} by the backfill), ${r.deleted} deleted, at snapshot ${r.lastSnapshotId ?? '-'}${r.stoppedEarly ? ', to be continued' : ''}`,
  );
}

// The schedule is read when the app loads (NCRONTAB, seconds first); every minute by default.
app.timer('anqSnapshotWatcher', { schedule: process.env.ANQ_WATCH_SCHEDULE || '0 */1 * * * *', handler: anqSnapshotWatcher });
