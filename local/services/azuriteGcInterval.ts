/**
 * How often Azurite reclaims the space of deleted and overwritten blobs, set from outside.
 *
 * Azurite's blob service runs a mark-and-sweep over its extents when it starts and then every
 * ten minutes (its `DEFAULT_GC_INTERVAL_MS`, not a CLI option). The sweep removes each
 * unreferenced extent's record from its LokiJS metadata one at a time, and LokiJS rebuilds the
 * collection's arrays on every removal: after a run that deleted or overwrote many blobs the
 * sweep takes time that grows with both counts, and the blob service answers nothing while it
 * runs. Measured (2026-12-04): on a fresh Azurite, 3,000 small blobs written and then
 * overwritten (3,000 unreferenced extents of 6,000) made the next sweep hold its event loop for
 * 57 s. In a run of the integration files (about 15 minutes on one Azurite) every blob request
 * was held from 598 s to 652 s after the start (a timer function took 53.5 s), and in a CI run a
 * health check that a test timed took 23.8 s at about the same mark.
 *
 * Loaded into the Azurite process with `--require` (local/services/azurite.ts) when
 * `VNA_AZURITE_GC_INTERVAL_MS` is set, this sets that interval before the blob server is built
 * (the GC manager reads the constant when it is constructed). A stack whose data lives for
 * one run (the test stack) sets it past the run's length; space is then given back when the
 * process ends. Nothing else of Azurite is touched.
 */
import * as path from 'path';

/** The interval the environment asks for, in ms; undefined when unset or not a positive whole number. */
export function requestedInterval(raw: string | undefined): number | undefined {
  if (raw === undefined || !/^[1-9][0-9]*$/.test(raw.trim())) return undefined;
  return Number(raw.trim());
}

/** Sets the interval on Azurite's blob constants module; false when it has no such constant. */
export function install(constants: { DEFAULT_GC_INTERVAL_MS?: unknown }, intervalMs: number): boolean {
  if (typeof constants.DEFAULT_GC_INTERVAL_MS !== 'number') return false;
  constants.DEFAULT_GC_INTERVAL_MS = intervalMs;
  return true;
}

// In the Azurite process: the constants module of the Azurite that runs (resolved from its own folder).
const interval = requestedInterval(process.env.VNA_AZURITE_GC_INTERVAL_MS);
if (interval !== undefined) {
  const root = path.dirname(require.resolve('azurite/package.json'));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const constants = require(path.join(root, 'dist', 'src', 'blob', 'utils', 'constants.js')) as Parameters<typeof install>[0];
  if (!install(constants, interval)) process.stderr.write('azuriteGcInterval: Azurite has no DEFAULT_GC_INTERVAL_MS; its space reclaim interval is left as it is\n');
}
