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

app.hook.appTerminate(flushTelemetryOnTerminate);

/** The OCR engine's worker threads (burned-in text) stop with the app. */
export async function stopOcrOnTerminate(_context: AppTerminateContext): Promise<void> {
  await closeAllTextDetectors();
}

app.hook.appTerminate(stopOcrOnTerminate);
