/**
 * Burned-in text on the images that are not of a type at risk (CT, MR, PT, CR, DX, MG, NM, ...)
 * and whose BurnedInAnnotation is missing (issue 17): the redact policy OCRs one instance per
 * series and image size, and trusts the rest of that series when it reads clean. Text on these
 * images, where there is any, is a device overlay drawn the same on every image of a series,
 * so one image answers for the others at a fraction of the cost of OCR'ing every slice (0.6 to
 * 2.4 s each). A series whose sample shows text has every instance OCR'd and redacted.
 *
 * The verdicts live in the process: each function instance checks the first image of a series
 * it sees, so a series spread over N instances is OCR'd at most N times, and a restart checks
 * again. Nothing is stored, so the catalog and its request count per instance are unchanged.
 * Concurrent files of one series wait for the one check in progress rather than each OCR'ing.
 * A sample whose pixels this engine cannot read records nothing: the next image is tried.
 *
 * The key is a hash of the series UID and the image size, never the UID itself.
 */
import { createHash } from 'node:crypto';

import { Lru } from '../lru';

export type SeriesVerdict = 'clean' | 'text';

/** What the lookup tells the caller: the verdict known, or that this file is the series' sample. */
export type SeriesLookup =
  | { verdict: SeriesVerdict }
  /** No verdict yet: this file checks the series and must call `settle` once, whatever happens. */
  | { verdict: undefined; settle: (verdict: SeriesVerdict | undefined) => void };

/** Verdicts kept at most (a series a few hundred bytes): beyond it the oldest are checked again. */
const DEFAULT_MAX_SERIES = 20_000;

export class SeriesPixelChecks {
  private readonly verdicts: Lru<SeriesVerdict>;
  private readonly pending = new Map<string, Promise<SeriesVerdict | undefined>>();

  constructor(maxSeries = DEFAULT_MAX_SERIES) {
    this.verdicts = new Lru(maxSeries);
  }

  /** The key of a series' images of one size: a hash, so that no UID is held as such. */
  static keyOf(seriesInstanceUid: string, rows: number, columns: number): string {
    return createHash('sha256').update(`${seriesInstanceUid}\u0000${rows}x${columns}`).digest('base64url');
  }

  /**
   * The series' verdict, waiting for a check in progress; or, when there is none, the claim to
   * check it (the caller OCRs this file and settles). A check settled with no verdict (its
   * file could not be read) lets the next waiter claim the series in turn.
   */
  async lookup(key: string): Promise<SeriesLookup> {
    for (;;) {
      // Used again, it becomes the most recent: the longest unused go first.
      const known = this.verdicts.get(key);
      if (known) return { verdict: known };
      const running = this.pending.get(key);
      if (!running) break;
      await running;
    }
    let settle!: (verdict: SeriesVerdict | undefined) => void;
    const done = new Promise<SeriesVerdict | undefined>((resolve) => {
      settle = resolve;
    });
    this.pending.set(key, done);
    let settled = false;
    return {
      verdict: undefined,
      settle: (verdict) => {
        if (settled) return;
        settled = true;
        this.pending.delete(key);
        if (verdict) this.record(key, verdict);
        settle(verdict);
      },
    };
  }

  /** Text, once seen, stays: a clean verdict never replaces it. */
  private record(key: string, verdict: SeriesVerdict): void {
    const was = this.verdicts.get(key);
    this.verdicts.set(key, was === 'text' ? 'text' : verdict);
  }

  /** Series with a verdict now (for tests and telemetry). */
  get size(): number {
    return this.verdicts.size;
  }
}
