/**
 * The cohort download's progress line: files, bytes, rate and ETA, drawn by progressBar.ts's
 * lineWriter (in place on a TTY, a plain line every few seconds otherwise).
 */
import type { DownloadProgress } from './cohortDownload';
import { count, duration } from './progressBar';

/** `12.3 MB` (decimal units, as disk and network figures are given). */
export function bytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * One line: `[#####.....]  52.1% 520/1,000 files  12.3 MB  4.1 MB/s  ETA 0:39  (fetched 500,
 * already here 20)`. The ETA is the files left at this run's file rate (sizes are not known before
 * they are fetched). Pure.
 */
export function renderDownloadProgress(p: DownloadProgress, width = 30): string {
  const done = p.present + p.fetched + p.missing + p.failed;
  const seconds = Math.max(p.elapsedSeconds, 0.001);
  const rate = `${bytes(Math.round(p.bytes / seconds))}/s`;
  const left = p.total - done;
  const eta = p.done ? 'done' : p.fetched === 0 ? 'ETA --:--' : `ETA ${duration(left / (p.fetched / seconds))}`;
  const tally = [`fetched ${count(p.fetched)}`, `already here ${count(p.present)}`, ...(p.missing ? [`missing ${count(p.missing)}`] : []), ...(p.failed ? [`failed ${count(p.failed)}`] : [])].join(', ');
  const fraction = p.total === 0 ? 1 : Math.min(1, done / p.total);
  const filled = Math.round(fraction * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(1).padStart(5)}% ${count(done)}/${count(p.total)} files  ${bytes(p.bytes)}  ${rate}  ${eta}  (${tally})`;
}
