/**
 * The Azurite preload that sets how often Azurite reclaims deleted blobs' space
 * (local/services/azuriteGcInterval.ts): what it reads from the environment and what it sets.
 */
import { install, requestedInterval } from '../../../local/services/azuriteGcInterval';

describe('azuriteGcInterval', () => {
  test('given a positive whole number of ms, then that interval; given anything else, then none', () => {
    expect(requestedInterval('21600000')).toBe(21600000);
    expect(requestedInterval(' 500 ')).toBe(500);
    for (const raw of [undefined, '', '0', '-5', '1.5', '10m', 'abc']) expect(requestedInterval(raw)).toBeUndefined();
  });

  test("given Azurite's constants, then the interval is set; given a module without the constant, then nothing is touched and install answers false", () => {
    const constants: { DEFAULT_GC_INTERVAL_MS?: unknown } = { DEFAULT_GC_INTERVAL_MS: 600_000 };
    expect(install(constants, 1234)).toBe(true);
    expect(constants.DEFAULT_GC_INTERVAL_MS).toBe(1234);
    const other: { DEFAULT_GC_INTERVAL_MS?: unknown } = {};
    expect(install(other, 1234)).toBe(false);
    expect(other).toEqual({});
  });
});
