/** Arithmetic of the benchmark report: percentiles, throughput, ratios, and the printed table. */

export interface ModeResult {
  seconds: number;
  /** Source megabytes (10^6 bytes) per second. */
  MBps: number;
  filesPerSecond: number;
  /** Peak resident set of the process that did the work, in MiB. */
  peakRssMB: number;
  /** CPU time of that process over the measured work (all its threads, user and system), where measured. */
  cpuSeconds?: number;
}

/**
 * Nearest-rank percentile (p in 0..100) of unsorted values: always one of the observed
 * values, so a p99 of 100 samples is the 99th smallest, not an interpolation.
 * Throws on an empty list, where no percentile exists.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new Error('percentile of no values');
  if (!(p >= 0 && p <= 100)) throw new Error(`percentile must be within 0..100, got ${p}`);
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}

/** ours / baseline, or null when either side did not run or the baseline is zero. */
export function ratio(ours: number | null | undefined, baseline: number | null | undefined): number | null {
  if (ours === null || ours === undefined || baseline === null || baseline === undefined) return null;
  if (!Number.isFinite(ours) || !Number.isFinite(baseline) || baseline === 0) return null;
  return ours / baseline;
}

export function modeResult(bytes: number, files: number, seconds: number, peakRssKB: number, cpuSeconds?: number): ModeResult {
  const safe = Math.max(seconds, 1e-9);
  return {
    seconds: round(seconds, 4),
    MBps: round(bytes / 1e6 / safe, 1),
    filesPerSecond: round(files / safe, 1),
    peakRssMB: round(peakRssKB / 1024, 1),
    ...(cpuSeconds === undefined ? {} : { cpuSeconds: round(cpuSeconds, 3) }),
  };
}

export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Plain-text columns: the first column left-aligned, the others right-aligned. */
export function formatTable(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ').trimEnd())
    .join('\n');
}

export function fmt(value: number | null | undefined, digits = 1): string {
  return value === null || value === undefined ? '-' : value.toFixed(digits);
}

/** The floor runs' rates for the table: those before the burst, then those after it. */
export function floorRunsLabel(floor: { runRates?: number[]; runsBeforeBurst?: number }): string {
  const rates = floor.runRates ?? [];
  if (rates.length === 0) return 'one run';
  const before = floor.runsBeforeBurst ?? rates.length;
  const after = rates.slice(before);
  return `${rates.slice(0, before).join(', ')} before the burst${after.length ? `, ${after.join(', ')} after` : ''}`;
}
