/**
 * App lifecycle hooks.
 *
 * On start the worker runs appStart: the heap's growth between full collections is set
 * (HEAP_GROWING_PERCENT). Left to V8, a worker serving frames settled in 12 of 20 runs into a
 * full collection every 100-300 ms, each letting the heap grow by a few MB over what it
 * kept, and spent twice the CPU per request (docs/research-access.md, 0.14.1).
 *
 * On termination (a scale-in, a deployment, a restart; locally `npm start` stopping) the worker
 * runs appTerminate before the process exits: the telemetry still buffered is sent then, or it
 * would be lost with the process.
 */
import { app, AppTerminateContext } from '@azure/functions';

import { loadHeapGrowingPercent } from '../shared/config/settings';
import { closeAllTextDetectors } from '../shared/dicom/pixels/tesseractDetector';
import { flushTelemetry } from '../shared/telemetry/telemetry';
import { applyHeapGrowth } from './heapGrowth';

/** The one appStart hook: the heap growth of HEAP_GROWING_PERCENT. A bad value fails the start with CONFIG_INVALID. */
export function onAppStart(): void {
  applyHeapGrowth(loadHeapGrowingPercent());
}

export async function flushTelemetryOnTerminate(_context: AppTerminateContext): Promise<void> {
  const { failed } = await flushTelemetry();
  // No invocation context here: the console is the worker's log.
  if (failed > 0) console.warn(`appTerminate: ${failed} telemetry sink(s) could not flush`);
}

/** The one appTerminate hook: the telemetry flush, then the OCR engine's worker threads (burned-in text) stop. */
export async function onAppTerminate(context: AppTerminateContext): Promise<void> {
  await flushTelemetryOnTerminate(context);
  await closeAllTextDetectors();
}

app.hook.appStart(onAppStart);
app.hook.appTerminate(onAppTerminate);
