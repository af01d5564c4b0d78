/**
 * Timer trigger: writes the research catalog to Parquet in the analytics container of the
 * research account, as a new snapshot published atomically (shared/analytics/snapshot.ts).
 * Its runs never overlap: the timer holds a singleton lock across instances, and the publish is
 * a conditional write besides, so a run started by hand (`npm run export-parquet`) at the same
 * time cannot corrupt a snapshot either: one of the two publishes, the other deletes its own.
 */
import { app, type InvocationContext, type Timer } from '@azure/functions';

import { runAnalyticsExport } from '../shared/analytics/exportRuntime';
import { loadAnalyticsSettings } from '../shared/config/analyticsSettings';

export async function exportParquet(_timer: Timer, context: InvocationContext): Promise<void> {
  const r = await runAnalyticsExport(loadAnalyticsSettings(), { log: (m) => context.info(m) });
  context.info(`analytics export: ${r.published ? 'published' : 'superseded'} ${r.snapshotId}: ${r.rows.instances} instances, ${r.rows.series} series, ${r.rows.studies} studies, ${r.files} files, ${r.bytes} bytes`);
}

// NCRONTAB (seconds first), read when the app loads; daily at 02:00 by default, `off` registers nothing.
const schedule = process.env.PARQUET_EXPORT_SCHEDULE || '0 0 2 * * *';
if (schedule.trim().toLowerCase() !== 'off') app.timer('exportParquet', { schedule, handler: exportParquet });
