/**
 * The app's appTerminate hook sends what Application Insights still buffers before the worker
 * exits. The library and Application Insights are stood in for: the hook is registered as
 * @azure/functions registers it, and called as the worker calls it on termination (the local
 * host does the same on stop: test/unit/local/hostInvocation.test.ts).
 */
const mockTerminateHooks: ((context: unknown) => unknown)[] = [];
const mockFlush = jest.fn(async () => undefined);

jest.mock('@azure/functions', () => ({
  app: { hook: { appTerminate: (handler: (context: unknown) => unknown) => mockTerminateHooks.push(handler) } },
}));
jest.mock('applicationinsights', () => ({
  setup: () => ({ setAutoCollectConsole: () => undefined, start: () => undefined }),
  defaultClient: { trackEvent: () => undefined, trackMetric: () => undefined, flush: () => mockFlush() },
}));

import { flushTelemetryOnTerminate, onAppTerminate } from '../../../functions/appHooks';
import { createTelemetry, flushTelemetry } from '../../../shared/telemetry/telemetry';

const terminateContext = { hookData: {}, appHookData: {} } as unknown as Parameters<typeof flushTelemetryOnTerminate>[0];

describe('appTerminate', () => {
  test('given the function files loaded, then one appTerminate hook is registered: the telemetry flush, then the OCR engine\'s stop', () => {
    expect(mockTerminateHooks).toEqual([onAppTerminate]);
  });

  test('given no telemetry sink made yet (the runtime never built), then the hook flushes nothing and resolves', async () => {
    await expect(flushTelemetry()).resolves.toEqual({ flushed: 0, failed: 0 });
    await flushTelemetryOnTerminate(terminateContext);
    expect(mockFlush).not.toHaveBeenCalled();
  });

  test('given Application Insights tracked an event, then the hook flushes its client once', async () => {
    const telemetry = createTelemetry({ connectionString: 'InstrumentationKey=00000000-0000-0000-0000-000000000000' });
    telemetry.trackFailure('SERVICE_UNAVAILABLE', 'ingest');
    await flushTelemetryOnTerminate(terminateContext);
    expect(mockFlush).toHaveBeenCalledTimes(1);
  });

  test('given a flush that fails, then the hook still resolves and says how many sinks failed', async () => {
    mockFlush.mockRejectedValueOnce(new Error('ingestion endpoint unreachable'));
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      await expect(flushTelemetryOnTerminate(terminateContext)).resolves.toBeUndefined();
      expect(warn).toHaveBeenCalledWith('appTerminate: 1 telemetry sink(s) could not flush');
    } finally {
      warn.mockRestore();
    }
  });
});
