/**
 * The worker's heap growth between full collections (HEAP_GROWING_PERCENT, set by the appStart
 * hook in functions/appHooks.ts). A module of its own, without imports of the app, so that a
 * test can load it in a fresh process.
 */
import { setFlagsFromString } from 'node:v8';

/**
 * Sets V8's heap growing factor to 1 + percent/100 for the rest of the process: V8 reads it each
 * time a full collection sets the next limit. 0 leaves V8's own factor. Returns the flag set.
 */
export function applyHeapGrowth(percent: number): string | undefined {
  if (percent === 0) return undefined;
  const flag = `--heap-growing-percent=${percent}`;
  setFlagsFromString(flag);
  return flag;
}
