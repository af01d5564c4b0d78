/**
 * The app's appStart hook sets the heap growth of HEAP_GROWING_PERCENT (the flag's effect on V8:
 * heapGrowth.test.ts). The appTerminate hook sends what Application Insights still buffers
 * before the worker exits. The library and Application Insights are stood in for: the hook is registered as
 * @azure/functions registers it, and called as the worker calls it on termination (the local
 * host does the same on stop: test/unit/local/hostInvocation.test.ts).
 */
const mockStartHooks: ((context: unknown) => unknown)[] = [];
const mockTerminateHooks: ((context: unknown) => unknown)[] = [];
const mockFlush = jest.fn(async () => undefined);
const mockSetFlags = jest.fn();

jest.mock('@azure/functions', () => ({
  app: {
    hook: {
      appStart: (handler: (context: unknown) => unknown) => mockStartHooks.push(handler),
      appTerminate: (handler: (context: unknown) => unknown) => mockTerminateHooks.push(handler),
    },
  },
}));
jest.mock('node:v8', () => ({ ...jest.requireActual<typeof import('node:v8')>('node:v8'), setFlagsFromString: (flag: string) => mockSetFlags(flag) }));
jest.mock('applicationinsights', () => ({
  setup: () => ({ setAutoCollectConsole: () => undefined, start: () => undefined }),
  defaultClient: { trackEvent: () => undefined, trackMetric: () => undefined, flush: () => mockFlush() },
}));

import { flushTelemetryOnTerminate, onAppStart, onAppTerminate } from '../../../functions/appHooks';
import { ErrorCodes } from '../../../shared/errors';
import { createTelemetry, flushTelemetry } from '../../../shared/telemetry/telemetry';

const terminateContext = { hookData: {}, appHookData: {} } as unknown as Parameters<typeof flushTelemetryOnTerminate>[0];

describe('appStart', () => {
  const saved = process.env.HEAP_GROWING_PERCENT;
  afterEach(() => {
    mockSetFlags.mockClear();
    if (saved === undefined) delete process.env.HEAP_GROWING_PERCENT;
    else process.env.HEAP_GROWING_PERCENT = saved;
  });

  test('given the function files loaded, then one appStart hook is registered: the heap growth', () => {
    expect(mockStartHooks).toEqual([onAppStart]);
  });

  test('given no HEAP_GROWING_PERCENT, then the hook sets V8\'s heap growing percent to 200', () => {
    delete process.env.HEAP_GROWING_PERCENT;
    onAppStart();
    expect(mockSetFlags.mock.calls).toEqual([['--heap-growing-percent=200']]);
  });

  test('given HEAP_GROWING_PERCENT 50, then the hook sets 50; given 0, then it leaves V8\'s own factor', () => {
    process.env.HEAP_GROWING_PERCENT = '50';
    onAppStart();
    process.env.HEAP_GROWING_PERCENT = '0';
    onAppStart();
    expect(mockSetFlags.mock.calls).toEqual([['--heap-growing-percent=50']]);
  });

  test('given HEAP_GROWING_PERCENT 301 or not a whole number, then the start fails with CONFIG_INVALID naming it, and no flag is set', () => {
    for (const bad of ['301', '-1', '1.5', 'lots']) {
      process.env.HEAP_GROWING_PERCENT = bad;
      expect(() => onAppStart()).toThrow(expect.objectContaining({ code: ErrorCodes.CONFIG_INVALID, message: expect.stringContaining('HEAP_GROWING_PERCENT must be a whole number from 0 to 300') }));
    }
    expect(mockSetFlags).not.toHaveBeenCalled();
  });
});

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
