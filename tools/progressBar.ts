/**
 * The backfill's progress in a terminal: one line redrawn in place on a TTY (bar, percentage,
 * counts, rate and ETA), or a plain line every few seconds when the output is a file or a pipe.
 */
import type { BackfillProgress } from '../shared/backfill/backfill';

/** `m:ss`, or `h:mm:ss` from an hour. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

export const count = (n: number) => n.toLocaleString('en-US');

/** One line: `[#####.....]  52.1% 52,100/100,000 files  1,234/s  ETA 0:39  (emitted 52,000, skipped 100)`. */
export function renderProgress(p: BackfillProgress, width = 30): string {
  const done = p.emitted + p.skipped;
  const rate = `${count(Math.round(p.rate))}/s`;
  const tally = `(emitted ${count(p.emitted)}${p.reindexed ? ` of which re-indexed ${count(p.reindexed)}` : ''}, skipped ${count(p.skipped)})`;
  if (p.total === undefined || p.total === 0) return `${count(done)} files  ${rate}  ${tally}${p.done ? '  done' : ''}`;
  const fraction = Math.min(1, done / p.total);
  const filled = Math.round(fraction * width);
  const eta = p.done ? 'done' : p.etaSeconds === undefined ? 'ETA --:--' : `ETA ${duration(p.etaSeconds)}`;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(1).padStart(5)}% ${count(done)}/${count(p.total)} files  ${rate}  ${eta}  ${tally}`;
}

export interface ProgressWriter<P = BackfillProgress> {
  update(p: P): void;
  finish(p: P): void;
}

export function progressWriter(stream: NodeJS.WriteStream, options: { intervalMs?: number; now?: () => number } = {}): ProgressWriter {
  return lineWriter(stream, renderProgress, options);
}

/**
 * Draws `render`'s line: redrawn in place at most every `intervalMs` on a TTY (its width from
 * the terminal's), else a plain line every few seconds; `finish` always draws the last state.
 */
export function lineWriter<P>(stream: NodeJS.WriteStream, render: (p: P, width?: number) => string, options: { intervalMs?: number; now?: () => number } = {}): ProgressWriter<P> {
  const now = options.now ?? Date.now;
  const tty = stream.isTTY === true;
  const interval = options.intervalMs ?? (tty ? 100 : 5000);
  let last = -Infinity;
  const width = () => Math.max(10, Math.min(40, (stream.columns ?? 100) - 90));
  return {
    update(p) {
      if (now() - last < interval) return;
      last = now();
      if (tty) stream.write(`\r\x1b[2K${render(p, width())}`);
      else stream.write(`${render(p)}\n`);
    },
    finish(p) {
      if (tty) stream.write(`\r\x1b[2K${render(p, width())}\n`);
      else stream.write(`${render(p)}\n`);
    },
  };
}
