/**
 * App lifecycle hooks. On termination (a scale-in, a deployment, a restart; locally `npm start`
 * stopping) the worker runs appTerminate before the process exits: the telemetry still
 * buffered is sent then, or it would be lost with the process.
 */
import { app, AppTerminateContext } from '@azure/functions';

import { closeAllTextDetectors } from '../shared/dicom/pixels/tesseractDetector';
import { flushTelemetry } from '../shared/telemetry/telemetry';

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

app.hook.appTerminate(onAppTerminate);
