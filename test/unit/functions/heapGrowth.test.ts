/**
 * functions/heapGrowth.ts sets V8's heap growing factor after the process has started (the
 * appStart hook runs once the worker is up). That V8 honours the flag then is what the setting
 * rests on: here a fresh process runs the same fixed workload (a retained set, and objects that
 * live long enough to be promoted and then die) with the factor at 1.1 and with V8's own, and
 * counts its full collections.
 */
import { execFileSync } from 'node:child_process';

import { useTranspiled } from '../transpiled';

describe('applyHeapGrowth', () => {
  const compiled = useTranspiled('functions/heapGrowth.ts');

  /** Full collections of the workload in a fresh process, after applyHeapGrowth(percent), and the flag it set. */
  function fullCollections(percent: number): { major: number; flag: string | null } {
    const script = `
      const { applyHeapGrowth } = require(${JSON.stringify(compiled())});
      const { PerformanceObserver, constants } = require('node:perf_hooks');
      const flag = applyHeapGrowth(${percent}) ?? null;
      let major = 0;
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++;
      }).observe({ entryTypes: ['gc'] });
      const kept = [];
      for (let i = 0; i < 300000; i++) kept.push({ a: i, b: 'x' + i, c: [i] });
      const ring = new Array(200000);
      let k = 0;
      let steps = 0;
      (function step() {
        for (let i = 0; i < 2000; i++) ring[k++ % ring.length] = { v: new Array(16).fill(k) };
        if (++steps < 1000) setImmediate(step);
        else setTimeout(() => process.stdout.write(JSON.stringify({ major, flag })), 50);
      })();
    `;
    return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 })) as { major: number; flag: string | null };
  }

  it('given 10 (a factor of 1.1) set after start, then the same workload takes more than twice the full collections it takes with V8\'s own factor', () => {
    const own = fullCollections(0);
    const tight = fullCollections(10);
    expect([own.flag, tight.flag]).toEqual([null, '--heap-growing-percent=10']);
    expect(own.major).toBeGreaterThan(0);
    expect(tight.major).toBeGreaterThan(2 * own.major);
  });

});
